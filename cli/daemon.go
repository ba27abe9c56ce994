package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/netfilter"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

var (
	socketFlag = &ucli.StringFlag{
		Name:    "socket",
		Usage:   "charon's VICI socket, PATH or unix://PATH (charon's own, not a relay's: the guard goes into the network namespace of the process listening on it)",
		Value:   vici.DefaultSocket,
		EnvVars: []string{"SWANMGR_SOCKET"},
	}
	stateDirFlag = &ucli.StringFlag{
		Name:    "state-dir",
		Usage:   "where swanmgr records what it loaded into each charon (no secrets)",
		Value:   assign.DefaultStateDir,
		EnvVars: []string{"SWANMGR_STATE_DIR"},
	}
	timeoutFlag = &ucli.DurationFlag{
		Name:  "timeout",
		Usage: "give up after this long",
		Value: 2 * time.Minute,
	}
)

func daemonFlags(extra ...ucli.Flag) []ucli.Flag {
	return append([]ucli.Flag{socketFlag, stateDirFlag, timeoutFlag}, extra...)
}

// socketPath normalizes --socket to an absolute path without symbolic
// links: the record and the lock are keyed by it.
func socketPath(c *ucli.Context) (string, error) {
	s := strings.TrimPrefix(c.String(socketFlag.Name), "unix://")
	if s == "" {
		return "", usageErrorf("--socket is empty")
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", err
	}
	// One socket, one record and one lock, however it is spelt
	// (/var/run is a link to /run on most systems).
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

// session is a connection to charon and the engine working on it.
type session struct {
	client *vici.Client
	engine *assign.Engine
	socket string
}

func openSession(ctx context.Context, c *ucli.Context) (*session, error) {
	sock, err := socketPath(c)
	if err != nil {
		return nil, err
	}
	s, err := newSession(ctx, sock, c.String(stateDirFlag.Name), c.App.Metadata)
	if err != nil {
		return nil, err
	}
	s.engine.Refresh = c.Bool(refreshFlag.Name)
	return s, nil
}

// firewallKey, in the app's Metadata, holds a func(sock string)
// (assign.Firewall, error) that replaces nftables: tests against a fake
// charon must not touch the firewall of the machine they run on.
const firewallKey = "swanmgr.firewall"

// guardOpener is how the guard's table of a socket is opened: nftables in
// charon's namespace, or the fake a test put under firewallKey in the
// app's Metadata.
func guardOpener(meta map[string]any) func(sock string) (assign.Firewall, error) {
	if open, ok := meta[firewallKey].(func(sock string) (assign.Firewall, error)); ok {
		return open
	}
	return func(sock string) (assign.Firewall, error) { return openGuardTable(sock) }
}

// newSession dials charon at sock (an absolute path, see socketPath) and
// builds the engine that works on it. Every command that changes charon
// (apply, unassign, the agent, a revert) gets its engine here, so they all
// enforce the same way; meta is the app's Metadata (see guardOpener).
func newSession(ctx context.Context, sock, stateDir string, meta map[string]any) (*session, error) {
	client, err := vici.Dial(ctx, sock)
	if err != nil {
		return nil, err
	}
	open := guardOpener(meta)
	return &session{
		client: client,
		socket: sock,
		engine: &assign.Engine{Daemon: assign.ViciDaemon{Client: client}, Store: assign.Store{Dir: stateDir}, Socket: sock,
			Firewall: func() (assign.Firewall, error) { return open(sock) }},
	}, nil
}

// openGuardTable opens the guard's nftables table in the network
// namespace of the charon behind sock.
func openGuardTable(sock string) (*netfilter.Table, error) {
	ns, err := netfilter.CharonNetns(sock)
	if err != nil {
		return nil, err
	}
	return netfilter.Open(ns)
}

// backend returns the IPsec backend of the charon in s: libipsec when it
// has loaded the kernel-libipsec plugin, else kernel. An --ipsec-backend
// (or SWANMGR_IPSEC_BACKEND) that contradicts it is an error: rules and
// guard are only right for the backend charon really uses.
func (s *session) backend(ctx context.Context, c *ucli.Context) (render.Backend, error) {
	st, err := s.client.Stats(ctx)
	if err != nil {
		return "", err
	}
	running := render.Kernel
	for _, p := range st.Plugins {
		if p == "kernel-libipsec" {
			running = render.LibIPsec
		}
	}
	if c.IsSet(backendFlag.Name) {
		want, err := render.ParseBackend(c.String(backendFlag.Name))
		if err != nil {
			return "", usageErrorf("%v", err)
		}
		if want != running {
			why := "it has not loaded the kernel-libipsec plugin"
			if running == render.LibIPsec {
				why = "it has loaded the kernel-libipsec plugin"
			}
			return "", usageErrorf("--ipsec-backend %s, but charon at %s uses the %s backend (%s): leave --ipsec-backend out to use what charon runs", want, s.socket, running, why)
		}
	}
	return running, nil
}

func (s *session) Close() {
	s.engine.Close()
	s.client.Close()
}

func withTimeout(c *ucli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, c.Duration(timeoutFlag.Name))
}

// connect opens a session to charon under --timeout; done closes both.
func connect(c *ucli.Context) (context.Context, *session, func(), error) {
	ctx, cancel := withTimeout(c)
	s, err := openSession(ctx, c)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, s, func() { s.Close(); cancel() }, nil
}

func applyCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "apply",
		Usage: "assign the file's policy to the running charon, with its nftables guard (replaces the policy swanmgr assigned before)",
		Description: "Loads secrets and connections over VICI, then unloads the connections and secrets\n" +
			"swanmgr had loaded before that the new policy no longer has. Unchanged rules are\n" +
			"not sent again, so their SAs stay up; if charon rejects anything, the previous\n" +
			"assignment is put back. Connections swanmgr did not load are never touched.\n" +
			"Negotiate and block rules are also enforced by an nftables guard (table inet\n" +
			"swanmgr in charon's namespace) that drops their clear text when no SA protects it,\n" +
			"also while charon is down (docs/enforcement.md); nftables must be installed.\n" +
			"--confirm 2m reverts to the previous assignment unless `swanmgr confirm` runs\n" +
			"in time, even if this session dies.\n" +
			"-o json writes one document, also on failure (docs/apply-json.md).",
		ArgsUsage: " ",
		Flags:     daemonFlags(fileFlag, insecureFlag, backendFlag, refreshFlag, resultOutputFlag, confirmFlag),
		Action: func(c *ucli.Context) error {
			o, err := newResultOutput(c, "apply")
			if err != nil {
				return err
			}
			return o.finish(c, runApply(c, o))
		},
	}
}

// policyAndCharon reads the -f file, connects to charon and reads its
// backend: what apply and plan start with.
func policyAndCharon(c *ucli.Context, cmd string) (context.Context, *session, func(), render.Backend, string, []byte, error) {
	if c.NArg() > 0 {
		return nil, nil, nil, "", "", nil, usageErrorf("%s takes no arguments (use -f FILE)", cmd)
	}
	_, path, data, err := readPolicy(c)
	if err != nil {
		return nil, nil, nil, "", "", nil, err
	}
	ctx, s, done, err := connect(c)
	if err != nil {
		return nil, nil, nil, "", "", nil, err
	}
	backend, err := s.backend(ctx, c)
	if err != nil {
		done()
		return nil, nil, nil, "", "", nil, err
	}
	return ctx, s, done, backend, path, data, nil
}

func runApply(c *ucli.Context, o *resultOutput) error {
	ctx, s, done, backend, path, data, err := policyAndCharon(c, "apply")
	if err != nil {
		return err
	}
	defer done()
	if err := checkPending(c, s.engine.Store, s.socket); err != nil {
		return err
	}
	refusePending(c, s)
	// --confirm: the pending change is recorded, and its watchdog runs,
	// before anything changes.
	var conf *assign.Confirmation
	confNew := false
	if c.IsSet(confirmFlag.Name) {
		if conf, confNew, err = beginConfirm(c, s, "apply", path, data); err != nil {
			return err
		}
	}
	d := o.doc
	d.Backend = strp(string(backend))
	in := assign.Inputs{PolicyFile: path, Policy: data, Insecure: c.Bool(insecureFlag.Name)}
	var l *loaded
	// With -o json, what the apply does to the guard comes from a plan
	// taken under the apply's lock, just before it (the report does not
	// say); a plan that fails leaves it unknown and the apply goes on.
	var pre *assign.Plan
	// A folder's files decoded at the last apply are taken back, and
	// those decoded now kept for the next, beside the apply.
	var reuseSaved chan error
	defer func() {
		if reuseSaved != nil {
			if err := <-reuseSaved; err != nil {
				fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err)
			}
		}
	}()
	// A changed policy is read and rendered before the record is read.
	s.engine.PrepareEarly = true
	rep, same, err := s.engine.Assign(ctx, in, string(backend), func() (*render.Result, assign.Inputs, error) {
		var err error
		vo := validateOptions(c)
		vo.Reuse = s.engine.Store.LoadReuse(s.socket)
		prior := s.engine.Store.PriorAhead(s.socket)
		// The decoded files' form made as soon as they are, and they
		// let go of before the render.
		save := func() error { return nil }
		parsed := func(r *model.Reuse) {
			save = s.engine.Store.SaveReuse(s.socket, r)
			vo.Reuse = nil
		}
		l, err = loadPolicyDataWith(c.App.ErrWriter, render.Options{Backend: backend}, prior, parsed, path, data, vo)
		var savePrior func() error
		if err == nil {
			savePrior = s.engine.Store.SavePrior(s.socket, prior(), l.result)
		}
		reuseSaved = make(chan error, 1)
		go func() {
			err := save()
			if savePrior != nil {
				err = errors.Join(err, savePrior())
			}
			reuseSaved <- err
		}()
		if err != nil {
			return nil, in, err
		}
		in.Read = l.assigned.Inputs
		in.Restorable = !l.assigned.InlineSecrets()
		// The model is not needed past this point: let the collector
		// have it (and the decoder's leftovers it keeps) while the
		// apply runs (about 10 MB at 5,000 rules).
		l.assigned = nil
		for _, w := range l.warnings {
			in.Warnings = append(in.Warnings, w.Error())
		}
		if o.json {
			pre, _ = s.engine.Plan(ctx, l.result)
		}
		return l.result, in, nil
	})
	if !s.engine.Prepared() {
		// Read ahead for an apply that did not begin (see PrepareEarly):
		// its policy, warnings and plan are not this run's to report.
		l, pre = nil, nil
	}
	if l != nil {
		d.setPolicy(l.result.Policy, l.result.Source, string(l.result.Backend))
		d.addWarnings(l.warnings)
	}
	var guardPlan *assign.GuardPlan
	if pre != nil {
		guardPlan = &pre.Guard
	}
	if err != nil && rep == nil {
		abandonConfirm(s, conf, confNew)
		if pre != nil {
			// What the apply set out to do; the error says what became of it.
			d.setPlan(pre, nil)
			d.Conns.Loaded, d.Conns.Unloaded, d.Secrets.Loaded, d.Secrets.Unloaded, d.Teardown = nil, nil, nil, nil, nil
			var re *assign.RejectedError
			d.Changed = errors.As(err, &re) && !re.Restored
		}
		return err
	}
	if same != nil {
		if conf != nil && confNew {
			r, err := armAfterAgent(ctx, s, conf, data)
			if err != nil || r == nil {
				abandonConfirm(s, conf, confNew)
			}
			if err != nil {
				return err
			}
			if r == nil {
				fmt.Fprintln(c.App.ErrWriter, "nothing changed, so nothing to confirm")
			} else {
				hint := c.App.Writer
				if o.json {
					hint = c.App.ErrWriter
				}
				fmt.Fprintf(hint, "%s was already assigned by swanmgr agent (at %s, unconfirmed): it is now the change pending confirmation, and the assignment it replaced (from %s) the one to go back to\n",
					path, r.At.Local().Format(time.RFC3339), r.Snapshot.Path)
				defer printConfirmHint(hint, s, conf)
			}
		}
		for _, w := range same.Warnings {
			fmt.Fprintln(c.App.ErrWriter, w)
		}
		if o.json {
			rs, gerr := s.engine.Store.LoadGuard(same)
			if gerr != nil {
				return gerr
			}
			d.setUpToDate(same, rs)
			d.Unverified = s.engine.ByNameOnly(same)
			return nil
		}
		printUnchanged(c.App.Writer, same, s.socket, s.engine.ByNameOnly(same))
		return nil
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", warn)
	}
	if conf != nil {
		hint := c.App.Writer
		if o.json {
			hint = c.App.ErrWriter
		}
		defer printConfirmHint(hint, s, conf)
	}
	if o.json {
		d.setPlan(rep.Plan, rep)
		d.setGuard(l.result.Guard, guardPlan)
		d.Changed = rep.Plan.Pending() || len(rep.Terminated) > 0 || (guardPlan != nil && guardPlan.Pending())
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "policy %q from %s assigned to charon at %s (%s backend)\n", l.result.Policy, l.result.Source, s.socket, l.result.Backend)
	printRules(w, rep.Plan, false)
	sum := rep.Plan.Summary()
	fmt.Fprintf(w, "%d added, %d changed, %d removed, %d unchanged (%d load-conn, %d unload-conn, %d secrets loaded, %d unloaded",
		sum[assign.Added], sum[assign.Changed], sum[assign.Removed], sum[assign.Unchanged],
		rep.LoadConn, rep.UnloadConn, rep.LoadShared, rep.UnloadShared)
	if n := len(rep.Terminated); n > 0 {
		fmt.Fprintf(w, ", %s of changed rules torn down", plural(n, "SA"))
	}
	fmt.Fprintln(w, ")")
	printUnverified(w, rep.Plan.Unverified)
	if g := l.result.Guard; g != nil {
		fmt.Fprintf(w, "guard: %s in table inet %s (%d entries): clear text they match is dropped, also while charon is down\n",
			plural(len(g.Guarded()), "rule"), guard.Table, len(g.Entries))
	}
	// The policy is in, but not all of it is in force (an SA
	// that would not go down, the guard): say so, exit 1.
	return err
}

func planCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "plan",
		Usage:       "show what apply would change, without changing anything",
		Description: "-o json writes one document, also on failure (docs/apply-json.md).",
		ArgsUsage:   " ",
		Flags: daemonFlags(fileFlag, insecureFlag, backendFlag, refreshFlag,
			&ucli.BoolFlag{Name: "exit-code", Usage: "exit 3 when changes are pending, 0 when none"}, resultOutputFlag),
		Action: func(c *ucli.Context) error {
			o, err := newResultOutput(c, "plan")
			if err != nil {
				return err
			}
			return o.finish(c, runPlan(c, o))
		},
	}
}

func runPlan(c *ucli.Context, o *resultOutput) error {
	ctx, s, done, backend, path, data, err := policyAndCharon(c, "plan")
	if err != nil {
		return err
	}
	defer done()
	d := o.doc
	d.Backend = strp(string(backend))
	// The decoded files and rendered connections apply kept are read,
	// not written: plan changes nothing.
	vo := validateOptions(c)
	vo.Reuse = s.engine.Store.LoadReuse(s.socket)
	l, err := loadPolicyDataWith(c.App.ErrWriter, render.Options{Backend: backend}, s.engine.Store.PriorAhead(s.socket), nil, path, data, vo)
	if err != nil {
		return err
	}
	d.setPolicy(l.result.Policy, l.result.Source, string(l.result.Backend))
	d.addWarnings(l.warnings)
	p, err := s.engine.Plan(ctx, l.result)
	if err != nil {
		return err
	}
	if o.json {
		d.setPlan(p, nil)
		d.setGuard(l.result.Guard, &p.Guard)
		d.Changed = p.Pending()
	} else {
		printPlan(c.App.Writer, l, p, s.socket)
	}
	if conf, _ := s.engine.Store.LoadConfirmation(s.socket); conf != nil {
		w := c.App.Writer
		if o.json {
			w = c.App.ErrWriter
		}
		fmt.Fprintf(w, "pending confirmation: the %s of %s reverts at %s unless swanmgr confirm runs; apply needs --confirm until then\n",
			conf.Command, conf.Policy, conf.Deadline.Local().Format(time.RFC3339))
	}
	if p.Pending() && c.Bool("exit-code") {
		return &exitError{code: ExitChanges}
	}
	return nil
}

// printPlan writes a plan as text.
func printPlan(w io.Writer, l *loaded, p *assign.Plan, socket string) {
	fmt.Fprintf(w, "plan: policy %q from %s on charon at %s (%s backend)\n", l.result.Policy, l.result.Source, socket, l.result.Backend)
	printRules(w, p, true)
	if len(p.Secrets) > 0 {
		var ids []string
		for _, s := range p.Secrets {
			ids = append(ids, s.Name)
		}
		fmt.Fprintf(w, "secrets to load (new or changed): %s\n", strings.Join(ids, ", "))
	}
	if len(p.Stale) > 0 {
		fmt.Fprintf(w, "secrets to unload: %s\n", strings.Join(p.Stale, ", "))
	}
	if line := guardLine(p.Guard); line != "" {
		fmt.Fprintln(w, line)
	}
	if !p.Pending() {
		fmt.Fprintln(w, "no changes: charon already has this policy")
		printUnverified(w, p.Unverified)
		return
	}
	sum := p.Summary()
	fmt.Fprintf(w, "%d to add, %d to change, %d to remove, %d unchanged\n", sum[assign.Added], sum[assign.Changed], sum[assign.Removed], sum[assign.Unchanged])
	printUnverified(w, p.Unverified)
}

// printUnverified says how many unchanged connections were found in
// charon by name only, their settings not compared.
func printUnverified(w io.Writer, n int) {
	if n > 0 {
		fmt.Fprintf(w, "charon's copies of %s were found by name, their settings not compared with what swanmgr loaded (over %d connections; --refresh compares them, and swanmgr agent does on its own)\n",
			plural(n, "unchanged connection"), assign.CompareAllUpTo)
	}
}

// guardLine says what apply would do to the guard.
func guardLine(g assign.GuardPlan) string {
	what := fmt.Sprintf("guard: %s guarded (%d entries)", plural(g.Guarded, "rule"), g.Entries)
	switch {
	case g.Remove:
		return "guard: to remove (no rule of the policy is guarded)"
	case g.Guarded == 0 && g.Entries == 0:
		return ""
	case g.Drift:
		return what + fmt.Sprintf("; table inet %s is not what swanmgr installed (missing or changed): apply replaces it", guard.Table)
	case g.Added > 0 || g.Removed > 0:
		return what + fmt.Sprintf(": %d entries to add or change, %d to remove", g.Added, g.Removed)
	}
	return what + ", unchanged"
}

// printUnchanged reports an apply that found nothing to do without
// reading the policy again.
func printUnchanged(w io.Writer, rec *assign.Record, socket string, byName int) {
	fmt.Fprintf(w, "policy %q from %s assigned to charon at %s (%s backend)\n", rec.Policy, rec.Source, socket, rec.Backend)
	tw := newTable(w)
	var rules []string
	conns := map[string][]string{}
	for _, c := range rec.Conns {
		if _, ok := conns[c.Origin.Rule]; !ok {
			rules = append(rules, c.Origin.Rule)
		}
		conns[c.Origin.Rule] = append(conns[c.Origin.Rule], c.Name)
	}
	for _, r := range rules {
		tw.row("  = %s\tunchanged\t%s\n", human(r), strings.Join(conns[r], ", "))
	}
	tw.flush()
	fmt.Fprintf(w, "0 added, 0 changed, 0 removed, %d unchanged (0 load-conn, 0 unload-conn, 0 secrets loaded, 0 unloaded; the policy file, its keys and swanmgr are as at the last apply, and charon has all %s and %s)\n",
		len(rules), plural(len(rec.Conns), "connection"), plural(len(rec.Secrets), "secret"))
	printUnverified(w, byName)
}

// printRules writes one line per rule (and, for a plan, the SAs a change
// tears down).
func printRules(w io.Writer, p *assign.Plan, planning bool) {
	tw := newTable(w)
	marks := map[assign.Change]string{assign.Added: "+", assign.Changed: "~", assign.Removed: "-", assign.Unchanged: "="}
	for _, r := range p.SortedRules() {
		var names []string
		restored := false
		for _, c := range r.Conns {
			names = append(names, c.Name)
			restored = restored || (c.Restore && c.Change != assign.Removed)
		}
		what := string(r.Change)
		if restored {
			what += " (charon had lost it)"
		}
		if r.Drift {
			what += " (drift: charon's copy was replaced by someone else)"
		}
		tw.row("  %s %s\t%s\t%s\n", marks[r.Change], human(r.Rule), what, strings.Join(names, ", "))
		if !planning {
			continue
		}
		for _, sa := range r.Teardown {
			var kids []string
			for _, ch := range sa.Children {
				kids = append(kids, fmt.Sprintf("%s #%d", ch.Name, ch.UniqueID))
			}
			// No tab: a line of one cell does not widen the columns.
			if len(kids) == 0 {
				tw.row("      tears down IKE_SA %s #%d with %s\n", sa.Conn, sa.UniqueID, sa.Remote)
			} else {
				tw.row("      tears down IKE_SA %s #%d with %s: CHILD_SA %s\n", sa.Conn, sa.UniqueID, sa.Remote, strings.Join(kids, ", "))
			}
		}
	}
	tw.flush()
}

func unassignCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "unassign",
		Usage:       "remove the connections, secrets, keys and guard swanmgr loaded (and their SAs), and nothing else; certificates stay",
		Description: "-o json writes one document, also on failure (docs/apply-json.md).",
		ArgsUsage:   " ",
		Flags:       daemonFlags(resultOutputFlag, confirmFlag),
		Action: func(c *ucli.Context) error {
			o, err := newResultOutput(c, "unassign")
			if err != nil {
				return err
			}
			return o.finish(c, runUnassign(c, o))
		},
	}
}

func runUnassign(c *ucli.Context, o *resultOutput) error {
	ctx, s, done, err := connect(c)
	if err != nil {
		return err
	}
	defer done()
	if err := checkPending(c, s.engine.Store, s.socket); err != nil {
		return err
	}
	refusePending(c, s)
	if c.IsSet(confirmFlag.Name) {
		conf, confNew, err := beginConfirm(c, s, "unassign", "", nil)
		if err != nil {
			return err
		}
		defer func() {
			if cur, _ := s.engine.Store.LoadConfirmation(s.socket); cur == nil {
				return
			}
			if o.json {
				printConfirmHint(c.App.ErrWriter, s, conf)
			} else {
				printConfirmHint(c.App.Writer, s, conf)
			}
		}()
		_ = confNew
	}
	d := o.doc
	var prevGuard *guard.Ruleset
	if o.json {
		// What there is to take away, for the document (the report
		// counts it only).
		rec, err := s.engine.Store.Load(s.socket)
		if err != nil {
			return err
		}
		if rec != nil {
			d.setPolicy(rec.Policy, rec.Source, rec.Backend)
			if prevGuard, err = s.engine.Store.LoadGuard(rec); err != nil {
				return err
			}
		}
	}
	rep, err := s.engine.Unassign(ctx)
	if rep == nil {
		return err
	}
	if o.json {
		// What would not unload is in the error, one line each.
		var failed []string
		if err != nil {
			failed = strings.Split(err.Error(), "\n")
		}
		d.setPlan(rep.Plan, &assign.Report{Terminated: rep.Terminated, Warnings: failed})
		d.Warnings = nil
		if prevGuard != nil {
			removed := 0
			if rep.GuardRemoved {
				removed = len(prevGuard.Entries)
			}
			added, drift := 0, false
			d.Guard = &guardDoc{Table: "inet " + guard.Table, EntriesAdded: &added, EntriesRemoved: &removed, Drift: &drift, Removed: rep.GuardRemoved}
		}
		d.Changed = rep.Plan.Previous != nil || rep.UnloadConn > 0 || rep.UnloadShared > 0 || len(rep.Terminated) > 0 || rep.GuardRemoved
		return err
	}
	guardMsg := ""
	if rep.GuardRemoved {
		guardMsg = ", guard removed (traffic the policy protected now flows in clear)"
	}
	fmt.Fprintf(c.App.Writer, "unassigned: %s and %s unloaded, %s torn down%s\n", plural(rep.UnloadConn, "connection"), plural(rep.UnloadShared, "secret"), plural(len(rep.Terminated), "SA"), guardMsg)
	return err
}
