package assign

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"runtime/trace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// Report is what Apply or Unassign did.
type Report struct {
	Plan *Plan
	// Calls that changed charon, by VICI command.
	LoadConn, UnloadConn, LoadShared, UnloadShared, LoadCert, LoadKey int
	// Terminated lists the SAs torn down because their rule changed or went away.
	Terminated []LiveSA
	// Warnings are things that went wrong after the new policy was in
	// place (a stale secret that would not unload, say).
	Warnings []string
	// GuardRemoved: Unassign removed the nftables guard.
	GuardRemoved bool
}

// RejectedError says charon refused part of a policy (or the apply was
// interrupted); the previous assignment was restored as far as
// RestoreErrs does not say otherwise.
type RejectedError struct {
	What     string // `rule "Abczz with Bob" (connection sm-abczz-with-bob)`
	Err      error  // charon's answer
	Restored bool
	// Interrupted: the apply was cancelled (a signal, --timeout) rather
	// than refused by charon.
	Interrupted bool
	// RestoreErrs lists what could not be put back.
	RestoreErrs []error
	// Dropped are the SAs of connections someone had replaced under
	// swanmgr, taken down before the load (they cannot be put back).
	Dropped []LiveSA
}

func (e *RejectedError) Error() string {
	gone := e.charonGone()
	msg := fmt.Sprintf("charon rejected %s: %v", e.What, e.Err)
	switch {
	case gone:
		msg = fmt.Sprintf("charon went away while swanmgr was loading %s (%v)", e.What, e.Err)
	case e.Interrupted:
		msg = fmt.Sprintf("interrupted while loading %s: %v", e.What, e.Err)
	}
	if len(e.RestoreErrs) == 0 && len(e.Dropped) > 0 {
		var ids []string
		for _, sa := range e.Dropped {
			ids = append(ids, fmt.Sprintf("%s #%d", sa.Conn, sa.UniqueID))
		}
		return msg + "; the previous assignment is in place again, except that the IKE_SAs of connections someone had replaced under swanmgr were taken down before the load (" + strings.Join(ids, ", ") + "): the next apply loads swanmgr's copy and its start actions bring them up"
	}
	if len(e.RestoreErrs) == 0 {
		return msg + "; nothing was changed: the previous assignment is still in place"
	}
	// A charon that went away fails every restore step the same way: say
	// it once, with a count, and what happens next.
	const shown = 3
	var rs []string
	for i, r := range e.RestoreErrs {
		if i == shown {
			rs = append(rs, fmt.Sprintf("and %d more", len(e.RestoreErrs)-shown))
			break
		}
		rs = append(rs, r.Error())
	}
	if gone {
		return fmt.Sprintf("%s; %d steps of putting the previous assignment back failed too (%s); the next apply (or the agent, once charon answers) loads the whole policy again",
			msg, len(e.RestoreErrs), strings.Join(rs, "; "))
	}
	return msg + "; restoring the previous assignment failed too: " + strings.Join(rs, "; ")
}

// charonGone says the failure was charon going away (it stopped or
// restarted) rather than an answer.
func (e *RejectedError) charonGone() bool {
	return errors.Is(e.Err, vici.ErrDisconnected) || errors.Is(e.Err, vici.ErrUnreachable)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// Engine applies policies to one charon.
type Engine struct {
	Daemon Daemon
	Store  Store
	Socket string // identifies the daemon in the record and the lock
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Firewall opens the guard's nftables table in charon's network
	// namespace, when a policy has a guard (or had one). nil: no
	// firewall access, and a policy with a guard is refused.
	Firewall func() (Firewall, error)
	// Precondition, when set, runs under the lock before Assign, Apply or
	// Unassign changes anything; an error stops it (the revert of a
	// confirm-or-revert checks, under the lock, that the change was not
	// confirmed meanwhile).
	Precondition func() error
	// Afterward, when set, runs under the lock after Assign, Apply or
	// Unassign went past Precondition, with the error the change ends with (nil
	// when it succeeded or nothing needed to change); an error it returns
	// is returned too. The revert of a confirm-or-revert notes the revert
	// and ends the confirmation here, so that no other apply, confirm or
	// agent comes between the change and its bookkeeping.
	Afterward func(err error) error
	// Refresh compares charon's copy of every connection swanmgr loaded
	// with what it loaded (list-conns), whatever the policy's size; see
	// CompareAllUpTo.
	Refresh bool
	// PrepareEarly lets Assign run its prepare before it reads the
	// record, when a look at the record's end tells that the policy file
	// is not the one assigned (policyChangedHint): the policy is read and
	// rendered first, and the record and charon's views after it, while
	// the collector has the policy's heap alone to go through (see
	// Assign). prepare must then not depend on Precondition; it runs
	// under the lock all the same. It may then have run for an Assign
	// that never used its result (the record could not be read,
	// Precondition failed, or charon turned out to be up to date):
	// Prepared tells.
	PrepareEarly bool

	fwMu sync.Mutex
	fw   Firewall
	// prepared says whether the last Assign used prepare's result.
	prepared atomic.Bool
}

// CompareAllUpTo is the number of connections up to which plan and apply
// compare charon's copy of every connection with what swanmgr loaded (a
// list-conns: milliseconds at this size). Above it they compare those of
// the connections they load, and of the others only that charon has them
// by name, as an unchanged apply does: listing 5,000 connections takes
// charon 0.3 s, most of what a one-rule change would cost. Refresh (plan
// and apply --refresh) compares every one, and so does the agent, as often
// as it can afford (docs/agent.md).
const CompareAllUpTo = 100

// compareLimit is CompareAllUpTo, lowered by tests.
var compareLimit = CompareAllUpTo

// ByNameOnly is how many connections of rec an apply that takes the
// unchanged shortcut found in charon by name only, their copies not
// compared (see CompareAllUpTo): what a Plan's Unverified counts.
func (e *Engine) ByNameOnly(rec *Record) int {
	if rec == nil || e.compareAll(rec) {
		return 0
	}
	n := 0
	for _, c := range rec.Conns {
		if c.View != "" {
			n++
		}
	}
	return n
}

// compareAll says whether charon's copies of every connection of rec are
// compared.
func (e *Engine) compareAll(rec *Record) bool {
	return e.Refresh || rec == nil || len(rec.Conns) <= compareLimit
}

// afterward runs Afterward with err and returns what the change returns.
func (e *Engine) afterward(err error) error {
	if e.Afterward == nil {
		return err
	}
	after := e.Afterward(err)
	switch {
	case after == nil:
		return err
	case err == nil:
		return after
	}
	return errors.Join(err, after)
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Plan computes what Apply(desired) would do, without changing anything,
// including the live SAs that would be torn down.
func (e *Engine) Plan(ctx context.Context, desired *render.Result) (*Plan, error) {
	rec, err := e.Store.Load(e.Socket)
	if err != nil {
		return nil, err
	}
	p, err := compute(ctx, e.Daemon, e.Socket, rec, desired, e.views(ctx, rec))
	if err != nil {
		return nil, err
	}
	if key := e.Store.existingFingerprintKey(); key != nil {
		keepUnchangedSecrets(p, rec, key)
	}
	if err := p.Teardowns(ctx, e.Daemon); err != nil {
		return nil, err
	}
	if p.Guard, err = e.planGuard(ctx, rec, desired.Guard); err != nil {
		return nil, err
	}
	return p, nil
}

// Apply assigns desired: after it returns nil, charon has exactly
// desired's connections and secrets among those swanmgr owns, and the
// record says so. On error nothing changed (see RejectedError).
func (e *Engine) Apply(ctx context.Context, desired *render.Result, in Inputs) (*Report, error) {
	unlock, rec, err := e.lockAndLoad(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if e.Precondition != nil {
		if err := e.Precondition(); err != nil {
			return nil, err
		}
	}
	rep, err := e.applyLocked(ctx, rec, desired, in)
	return rep, e.afterward(err)
}

// lockAndLoad takes the socket's lock and reads the record under it.
func (e *Engine) lockAndLoad(ctx context.Context) (func(), *Record, error) {
	unlock, err := e.Store.Lock(ctx, e.Socket)
	if err != nil {
		return nil, nil, err
	}
	r := trace.StartRegion(ctx, "loadRecord")
	rec, err := e.Store.Load(e.Socket)
	r.End()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return unlock, rec, nil
}

// Assign is Apply with a shortcut: when the policy file, everything it
// read and the program are unchanged since the last apply, and charon
// still has every connection and secret of it, nothing is parsed or sent
// and the record comes back instead of a report. Otherwise prepare reads,
// validates and renders the policy, and Apply goes ahead, all under one
// hold of the lock.
func (e *Engine) Assign(ctx context.Context, in Inputs, backend string, prepare func() (*render.Result, Inputs, error)) (*Report, *Record, error) {
	e.prepared.Store(false)
	unlock, err := e.Store.Lock(ctx, e.Socket)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if e.PrepareEarly && e.Store.policyChangedHint(e.Socket, in) {
		// Prepared now, before the record is read rather than beside it:
		// at 5,000 rules the record and the guard's record are some 12 MB
		// live, and with them beside the policy's parse and render the
		// memory bound (memlimit) has the collector run over and over;
		// read after them, a one-rule change to a folder of 5,001 files
		// took 0.401 → 0.372 s, 0.575 → 0.492 s of CPU (24 alternating
		// changes); a change to one file of 5,000 rules as long as before.
		e.warmFirewall()
		r := trace.StartRegion(ctx, "prepare-early")
		desired, pin, perr := prepare()
		r.End()
		prepare = func() (*render.Result, Inputs, error) { return desired, pin, perr }
	}
	used := prepare
	prepare = func() (*render.Result, Inputs, error) {
		e.prepared.Store(true)
		return used()
	}
	r := trace.StartRegion(ctx, "loadRecord")
	rec, err := e.Store.Load(e.Socket)
	r.End()
	if err != nil {
		return nil, nil, err
	}
	if e.Precondition != nil {
		if err := e.Precondition(); err != nil {
			return nil, nil, err
		}
	}
	rep, same, err := e.assignLocked(ctx, rec, in, backend, prepare)
	return rep, same, e.afterward(err)
}

// Prepared reports whether the last Assign went on with what prepare
// returned (see PrepareEarly): what prepare found out is the apply's to
// report only then.
func (e *Engine) Prepared() bool { return e.prepared.Load() }

// assignLocked is Assign under the lock, past the precondition.
func (e *Engine) assignLocked(ctx context.Context, rec *Record, in Inputs, backend string, prepare func() (*render.Result, Inputs, error)) (*Report, *Record, error) {
	r := trace.StartRegion(ctx, "upToDate")
	same, err := e.upToDate(ctx, rec, in, backend)
	r.End()
	if err != nil {
		return nil, nil, err
	} else if same {
		return nil, rec, nil
	}
	// nft gets ready (see Warmer) and charon lists its connections while
	// the policy is read and rendered.
	e.warmFirewall()
	vctx, vcancel := context.WithCancel(ctx)
	defer vcancel()
	ahead := e.startAhead(vctx, rec)
	r = trace.StartRegion(ctx, "prepare-policy")
	desired, in, err := prepare()
	r.End()
	if err != nil {
		vcancel()
		ahead.wait()
		ahead.recordedGuard()
		return nil, nil, err
	}
	rep, err := e.apply(ctx, rec, desired, in, ahead)
	return rep, nil, err
}

// keepUnchangedSecrets moves the secrets charon already has with the same
// owners and value (by fingerprint) out of the plan's load list. A secret
// an unfinished apply noted is always loaded: that apply may have given it
// another value (load-shared replaces in place, and a rollback cannot put
// the old one back) while the record still has the fingerprint of the one
// before.
//
// It returns the fingerprints it computed, by secret name, for the new
// record (at thousands of secrets, an HMAC each counts).
func keepUnchangedSecrets(p *Plan, rec *Record, key []byte) map[string]string {
	if p.Desired == nil {
		return nil
	}
	var load []render.Secret
	fps := make(map[string]string, len(p.Secrets))
	f := newFingerprinter(key)
	for _, s := range p.Secrets {
		old := rec.secret(s.Name)
		if p.LiveSecrets[s.Name] && !rec.pendingSecret(s.Name) && old != nil && old.Fingerprint != "" {
			fp := f.of(s)
			fps[s.Name] = fp
			if hmac.Equal([]byte(old.Fingerprint), []byte(fp)) {
				if p.KeptSecrets == nil {
					// Most are kept (a change sends a few): sized once.
					p.KeptSecrets = make([]render.Secret, 0, len(p.Secrets))
				}
				p.KeptSecrets = append(p.KeptSecrets, s)
				continue
			}
		}
		load = append(load, s)
	}
	p.Secrets = load
	return fps
}

func ruleWhat(c ConnPlan) string {
	if c.Origin.Rule == "" {
		return "connection " + c.Name
	}
	return fmt.Sprintf("rule %q (connection %s)", c.Origin.Rule, c.Name)
}

// sameRecord reports whether two records say the same, apart from the
// time of the apply.
func sameRecord(a, b *Record) bool {
	if a == nil || b == nil || a.Source != b.Source || a.Policy != b.Policy || a.Backend != b.Backend || a.GuardHash != b.GuardHash ||
		len(a.Conns) != len(b.Conns) || len(a.Secrets) != len(b.Secrets) || len(a.Inputs) != len(b.Inputs) ||
		strings.Join(a.Keys, ",") != strings.Join(b.Keys, ",") || strings.Join(a.Warnings, "\n") != strings.Join(b.Warnings, "\n") ||
		strings.Join(a.Leftovers, ",") != strings.Join(b.Leftovers, ",") {
		return false
	}
	for i := range a.Inputs {
		if a.Inputs[i] != b.Inputs[i] {
			return false
		}
	}
	for i := range a.Secrets {
		x, y := a.Secrets[i], b.Secrets[i]
		if x.Name != y.Name || x.Fingerprint != y.Fingerprint || strings.Join(x.Owners, ",") != strings.Join(y.Owners, ",") || strings.Join(x.Conns, ",") != strings.Join(y.Conns, ",") {
			return false
		}
	}
	for i := range a.Conns {
		if a.Conns[i].Name != b.Conns[i].Name || a.Conns[i].Hash != b.Conns[i].Hash || a.Conns[i].Origin != b.Conns[i].Origin || a.Conns[i].View != b.Conns[i].View {
			return false
		}
	}
	return true
}

// rollbackSet is what an apply has changed so far.
type rollbackSet struct {
	conns    []ConnPlan // loaded (added or changed)
	secrets  []string   // added
	keys     []string   // added
	replaced []string   // secrets charon had, now holding their new value
	// maybeReplaced are secrets charon had whose load-shared got no
	// answer: charon may hold the new value or the old one.
	maybeReplaced []string
	guard         *guardStep // the guard installed for the apply
	// maybe are connections whose load-conn got no answer: charon may
	// or may not have them.
	maybe []ConnPlan
	// dropped are the SAs dropReplaced took down: the rollback cannot
	// bring them back, and says so.
	dropped []LiveSA
	// note is the pending note once it names keys this apply added: the
	// keys the rollback unloads are taken off it again.
	note *Pending
}

// mayHaveLoaded says whether a failed load may still have been carried
// out: only an answer from charon refusing it (vici.CommandError) says
// it was not.
func mayHaveLoaded(err error) bool {
	var ce *vici.CommandError
	return !errors.As(err, &ce)
}

// rollbackTimeout bounds putting things back after a failure.
const rollbackTimeout = 30 * time.Second

// rejected reports a failure before any connection, secret or key was
// changed, and puts the previous guard back.
func (e *Engine) rejected(ctx context.Context, g *guardStep, what string, cause error) error {
	re := &RejectedError{What: what, Err: cause, Interrupted: ctx.Err() != nil, Restored: true}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if err := g.restore(rctx); err != nil {
		re.RestoreErrs = append(re.RestoreErrs, err)
		re.Restored = false
	}
	return re
}

// rollback puts back what this apply loaded: changed connections get their
// recorded settings again, added ones and added secrets and keys are
// unloaded. It runs even when ctx was cancelled (Ctrl-C, --timeout): what
// was loaded must not be left behind unowned.
func (e *Engine) rollback(ctx context.Context, rec *Record, u rollbackSet, what string, cause error) error {
	re := &RejectedError{What: what, Err: cause, Interrupted: ctx.Err() != nil, Dropped: u.dropped}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var bodiesErr error
	bodiesLoaded := false
	keepPending := false
	if len(u.maybe) > 0 {
		live, err := e.Daemon.Conns(ctx)
		if err != nil {
			re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("listing connections to put back %s: %w", u.maybe[0].Name, err))
			keepPending = true
		} else {
			have := set(live)
			for _, c := range u.maybe {
				if have[c.Name] || c.Change == Changed {
					u.conns = append(u.conns, c)
				} else {
					// Not there (yet): the pending note keeps it swanmgr's,
					// so the next apply or unassign removes it if it shows.
					keepPending = true
				}
			}
		}
	}
	for i := len(u.conns) - 1; i >= 0; i-- {
		c := u.conns[i]
		var err error
		if c.Change == Changed && c.Old != nil && !c.Restore {
			if !bodiesLoaded {
				bodiesLoaded = true
				bodiesErr = e.Store.LoadBodies(rec)
			}
			if bodiesErr != nil || c.Old.Body == nil {
				re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("%s: its previous settings are not recorded: %v", c.Name, bodiesErr))
				continue
			}
			msg, merr := render.ConnMessage(render.Conn{Name: c.Name, Body: c.Old.Body})
			err = merr
			if err == nil {
				err = e.Daemon.LoadConn(ctx, c.Name, msg)
			}
		} else {
			err = e.Daemon.UnloadConn(ctx, c.Name)
		}
		if err != nil {
			re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	for _, id := range u.secrets {
		if err := e.Daemon.UnloadShared(ctx, id); err != nil {
			re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("secret %s: %w", id, err))
		}
	}
	var keysGone []string
	for _, id := range u.keys {
		if err := e.Daemon.UnloadKey(ctx, id); err != nil {
			re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("private key %s: %w", id, err))
			continue
		}
		keysGone = append(keysGone, id)
	}
	// A replaced secret stays in the pending note (Restored is false, so
	// the note is kept): the next apply sends it again whatever the record's
	// fingerprint says (see keepUnchangedSecrets).
	for _, id := range u.replaced {
		re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("secret %s already holds its new value (charon cannot give the old one back; the next apply loads it again)", id))
	}
	for _, id := range u.maybeReplaced {
		re.RestoreErrs = append(re.RestoreErrs, fmt.Errorf("secret %s may hold its new value (charon did not answer; the next apply loads it again)", id))
	}
	// The guard goes back last: until the connections are as they were,
	// it enforces both policies.
	if err := u.guard.restore(ctx); err != nil {
		re.RestoreErrs = append(re.RestoreErrs, err)
	}
	re.Restored = len(re.RestoreErrs) == 0
	if re.Restored && !keepPending && (rec == nil || rec.Pending.empty()) {
		// Nothing is left that the record does not list.
		if err := e.Store.clearPending(e.Socket); err != nil {
			re.RestoreErrs = append(re.RestoreErrs, err)
			re.Restored = false
		}
	} else if u.note != nil && len(keysGone) > 0 {
		// The note stays: not with keys that are gone (unassign would
		// fail to unload them).
		note := *u.note
		note.Keys = nil
		for _, id := range u.note.Keys {
			if !contains(keysGone, id) {
				note.Keys = append(note.Keys, id)
			}
		}
		save := func() error { return e.Store.savePending(e.Socket, note) }
		if note.empty() {
			save = func() error { return e.Store.clearPending(e.Socket) }
		}
		if err := save(); err != nil {
			re.RestoreErrs = append(re.RestoreErrs, err)
			re.Restored = false
		}
	}
	return re
}

// Unassign unloads everything swanmgr loaded into this daemon (and
// terminates its SAs), and nothing else.
func (e *Engine) Unassign(ctx context.Context) (*Report, error) {
	unlock, rec, err := e.lockAndLoad(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if e.Precondition != nil {
		if err := e.Precondition(); err != nil {
			return nil, err
		}
	}
	rep, err := e.unassignLocked(ctx, rec)
	return rep, e.afterward(err)
}

// unassignLocked is Unassign under the lock, past the precondition.
func (e *Engine) unassignLocked(ctx context.Context, rec *Record) (*Report, error) {
	p, err := Compute(ctx, e.Daemon, e.Socket, rec, nil)
	if err != nil {
		return nil, err
	}
	rep := &Report{Plan: p}
	before, err := e.Daemon.LiveSAs(ctx, p.teardownQueries())
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, c := range p.Conns {
		if c.Restore {
			continue
		}
		if err := e.Daemon.UnloadConn(ctx, c.Name); err != nil {
			errs = append(errs, fmt.Errorf("unloading %s: %w", ruleWhat(c), err))
			continue
		}
		rep.UnloadConn++
	}
	for _, id := range p.Stale {
		if err := e.Daemon.UnloadShared(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("unloading secret %s: %w", id, err))
			continue
		}
		rep.UnloadShared++
	}
	if rec != nil {
		for _, id := range rec.Keys {
			if err := e.Daemon.UnloadKey(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("unloading private key %s: %w", id, err))
			}
		}
	}
	if err := e.teardown(ctx, p, before, rep); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// The guard stays while anything of the policy is left.
		return rep, errors.Join(errs...)
	}
	// The guard goes after the connections: no policy, no promise.
	if rec != nil && rec.GuardHash != "" {
		prev, err := e.Store.LoadGuard(rec)
		if err != nil {
			return rep, err
		}
		fw, err := e.firewall()
		if err != nil {
			return rep, fmt.Errorf("removing the guard: %w", err)
		}
		if _, err := fw.Install(ctx, prev, nil); err != nil {
			return rep, fmt.Errorf("removing the guard: %w", err)
		}
		rep.GuardRemoved = true
	}
	if err := e.Store.Remove(e.Socket); err != nil {
		return rep, err
	}
	return rep, nil
}

// Summary counts rule changes: added, changed, removed, unchanged.
func (p *Plan) Summary() map[Change]int {
	m := map[Change]int{}
	for _, r := range p.Rules {
		m[r.Change]++
	}
	return m
}

// SortedRules returns the rules with removed ones last.
func (p *Plan) SortedRules() []RulePlan {
	out := append([]RulePlan{}, p.Rules...)
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Change != Removed && out[j].Change == Removed
	})
	return out
}
