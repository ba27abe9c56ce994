package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// policy is a policy file read, validated and rendered, with what an
// apply records of it.
type policy struct {
	result   *render.Result
	in       assign.Inputs
	files    []string // the policy file and the files it read
	fp       string   // their fingerprint, taken as they were read
	hashes   map[string]string
	rules    int
	warnings []string
	byName   map[string]*render.Conn
}

func (p *policy) conn(name string) *render.Conn {
	if p == nil {
		return nil
	}
	return p.byName[name]
}

// policyError is a policy file that does not read or validate.
type policyError struct{ err error }

func (e *policyError) Error() string { return e.err.Error() }
func (e *policyError) Unwrap() error { return e.err }

// read reads, validates and renders the policy file, as `swanmgr apply`
// does.
func (a *Agent) read() (*policy, error) {
	data, err := model.ReadFile(a.cfg.PolicyFile)
	if err != nil {
		return nil, a.refuseUnread(err)
	}
	return a.parse(data)
}

// refuseUnread is the refusal of a policy that could not be read: of a
// folder, its files as they are now are watched (one of them is why).
func (a *Agent) refuseUnread(err error) error {
	a.refused, _ = model.FolderFiles(a.cfg.PolicyFile)
	return &policyError{err}
}

// refuse is the refusal of a policy read as data: its files, and those f
// (if it decoded) names, are watched.
func (a *Agent) refuse(data []byte, f *model.File, err error) error {
	a.refused = nil
	for name := range model.PolicyFiles(a.cfg.PolicyFile, data) {
		a.refused = append(a.refused, name)
	}
	if f != nil {
		a.refused = append(a.refused, f.ReferencedFiles()...)
	}
	return &policyError{err}
}

func (a *Agent) parse(data []byte) (*policy, error) {
	a.parses.Add(1)
	path := a.cfg.PolicyFile
	// A folder's files that did not change since the last read are not
	// decoded again (the results are kept in memory only).
	if a.reuse == nil {
		a.reuse = assign.NewReuse()
	}
	f, err := model.ParseWith(path, data, a.reuse)
	a.reuse.Prune()
	if err != nil {
		return nil, a.refuse(data, nil, err)
	}
	asg, warns, err := model.Validate(f, a.cfg.Validate)
	if err != nil {
		return nil, a.refuse(data, f, err)
	}
	res, err := render.Render(asg, render.Options{Backend: a.backend})
	if err != nil {
		return nil, a.refuse(data, f, err)
	}
	// A folder's own stat changes when a file is added, removed or
	// renamed in it; its files' when they are written.
	files := []string{path}
	if f.IsFolder() {
		files = append(files, f.Files()...)
	}
	p := newPolicy(path, data, a.cfg.Validate.InsecureSecrets, asg, warns, res)
	p.files = files
	for _, i := range asg.Inputs {
		if i.Kind == "file" {
			p.files = append(p.files, i.Name)
		}
	}
	p.fp = a.files.fingerprint(p.files)
	p.hashes = map[string]string{}
	for _, f := range p.files {
		p.hashes[f] = a.files.seen[f].hash
	}
	// The fingerprint is taken after the files were read: one written in
	// between (an editor writing in place on a loaded machine) would leave
	// it describing what was not parsed, and that change would never be
	// read. Then the fingerprint stays unset and the next check reads the
	// files again.
	read := model.PolicyFiles(path, data)
	for _, i := range asg.Inputs {
		if i.Kind == "file" {
			read[i.Name] = []byte(i.Data.Reveal())
		}
	}
	for name, b := range read {
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != p.hashes[name] {
			p.fp = ""
			// Or the watcher's hash is what is stale: a file rewritten in
			// place with its size and time kept looks unchanged to it.
			// Either way it hashes the file again at its next look.
			if st, ok := a.files.seen[name]; ok {
				st.racy = true
				a.files.seen[name] = st
			}
		}
	}
	return p, nil
}

// newPolicy is a validated and rendered policy with what the agent
// applies it with: its inputs, warnings and connections by name.
func newPolicy(path string, data []byte, insecure bool, asg *model.Assigned, warns model.Problems, res *render.Result) *policy {
	p := &policy{result: res, rules: len(asg.Rules), byName: make(map[string]*render.Conn, len(res.Conns)),
		in: assign.Inputs{PolicyFile: path, Policy: data, Read: asg.Inputs, Insecure: insecure, Restorable: !asg.InlineSecrets()}}
	for _, w := range warns {
		p.warnings = append(p.warnings, w.Error())
	}
	p.in.Warnings = p.warnings
	for i := range res.Conns {
		p.byName[res.Conns[i].Name] = &res.Conns[i]
	}
	return p
}

// converge makes charon have the policy: the file as it is now, or, while
// it does not validate or is being written, the last good one. force (a
// fresh connection, a reload) skips the cheap check.
func (a *Agent) converge(ctx context.Context, conn *Conn, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ApplyTimeout)
	defer cancel()
	if a.holding(ctx) != "" {
		return a.keepCurrent(ctx, conn, force)
	}
	err := a.convergeFile(ctx, conn, force)
	var he *heldError
	if errors.As(err, &he) {
		// A change with --confirm began after Hold was asked: the engine's
		// Precondition stopped the apply under the lock.
		a.noteHold(he.why)
		return nil
	}
	return err
}

// convergeFile is converge when not holding off.
func (a *Agent) convergeFile(ctx context.Context, conn *Conn, force bool) error {
	before := a.watched()
	fp := a.files.fingerprint(before)
	// A file being written (not renamed into place) may be read half-way:
	// act on a change once the files have been still for a moment.
	settling := a.good != nil && fp != a.goodFP && fp != a.badFP && a.files.modifiedWithin(before, a.cfg.Settle)
	if !settling && (fp != a.badFP || a.good == nil) {
		if !force && a.good != nil && fp == a.goodFP {
			// The files are as assigned: the cheap check, and now and
			// then the full one.
			if a.cheapOK(ctx, conn, a.good) {
				return nil
			}
			return a.fullCheck(ctx, conn)
		}
		err := a.assignFile(ctx, conn, fp)
		var pe *policyError
		if !errors.As(err, &pe) {
			return err
		}
		a.badFP = fp
		// The refusal may have added files to what is watched (refused):
		// the refused state is that of the new set, if nothing changed
		// meanwhile, or the next check would read and refuse it again.
		if now := a.watched(); a.files.fingerprint(before) == fp {
			a.badFP = a.files.fingerprint(now)
		}
		if a.good == nil {
			a.logf("%s refused: %v; nothing is assigned by this agent until it validates", a.cfg.PolicyFile, err)
			return nil
		}
		a.logf("%s refused, policy %q stays assigned as last read: %v", a.cfg.PolicyFile, a.good.result.Policy, err)
	}
	// The file does not validate (or is still being written): keep the
	// last good policy enforced (it may be charon that restarted meanwhile).
	if !force && a.cheapOK(ctx, conn, a.good) {
		return nil
	}
	return a.fullCheck(ctx, conn)
}

// fullCheck compares charon with the last good policy as an apply would
// (Engine.Plan: connections and secrets missing, connections replaced under
// swanmgr with other settings — charon's list-conns view against the
// recorded one —, the guard's table) and applies it if anything differs.
// The files themselves are the watcher's: they are as when read.
//
// Comparing charon's copies means listing every connection (list-conns),
// which costs about 0.1 s of charon's and swanmgr's time at 1,000 rules: it
// runs every driftEvery; the full checks between use Engine.Assign's own
// up-to-date check (the record, every input, connection and secret names,
// the guard's table), which does not list them.
func (a *Agent) fullCheck(ctx context.Context, conn *Conn) error {
	g := a.good
	a.lastFull = time.Now()
	if time.Since(a.lastDrift) < a.driftEvery() {
		if len(g.result.Certs) > 0 || len(g.result.Keys) > 0 {
			// Engine.Assign loads certificates and keys in full every
			// time: such policies wait for the next comparison.
			return nil
		}
		start := time.Now()
		rep, same, err := conn.Engine.Assign(ctx, g.in, string(a.backend), func() (*render.Result, assign.Inputs, error) {
			return g.result, g.in, nil
		})
		if err != nil {
			return err
		}
		if rep != nil {
			a.saWake = true
		}
		a.report(rep, same, time.Since(start))
		return nil
	}
	a.lastDrift = time.Now()
	// Every connection's copy, whatever the policy's size (an apply
	// compares them only up to assign.CompareAllUpTo).
	conn.Engine.Refresh = true
	defer func() { conn.Engine.Refresh = false }()
	p, err := conn.Engine.Plan(ctx, g.result)
	if err != nil {
		return err
	}
	if !p.Pending() {
		return nil
	}
	var drifted []string
	for _, r := range p.Rules {
		if r.Drift {
			drifted = append(drifted, fmt.Sprintf("%q", r.Rule))
		}
	}
	if len(drifted) > 0 {
		a.logf("charon's copy of %s %s was replaced by someone else: loading swanmgr's again", plural(len(drifted), "rule", "rules"), names(drifted))
	}
	if p.Guard.Drift {
		a.logf("the guard's nftables table is not the one swanmgr installed (removed or changed by someone else): installing it again")
	}
	start := time.Now()
	rep, err := conn.Engine.Apply(ctx, g.result, g.in)
	if err != nil {
		return err
	}
	a.saWake = true
	a.report(rep, nil, time.Since(start))
	return nil
}

// driftEvery is how often the full check compares charon's copies of the
// connections: every full check up to 100 connections, then less often in
// proportion, so that the cost stays about that of 100.
func (a *Agent) driftEvery() time.Duration {
	n := 0
	if a.good != nil {
		n = len(a.good.result.Conns)
	}
	if n <= 100 {
		return a.cfg.FullCheckInterval
	}
	return a.cfg.FullCheckInterval * time.Duration(n) / 100
}

// assignFile assigns the policy file as it is now. A file that does not
// read or validate comes back as a *policyError, with charon unchanged.
func (a *Agent) assignFile(ctx context.Context, conn *Conn, fp string) error {
	data, err := model.ReadFile(a.cfg.PolicyFile)
	if err != nil {
		return a.refuseUnread(err)
	}
	start := time.Now()
	a.lastFull = start
	var p *policy
	in := assign.Inputs{PolicyFile: a.cfg.PolicyFile, Policy: data, Insecure: a.cfg.Validate.InsecureSecrets}
	rep, same, err := conn.Engine.Assign(ctx, in, string(a.backend), func() (*render.Result, assign.Inputs, error) {
		// The files are as when the last good policy was read from them
		// (charon restarted, say): no need to read and render them again,
		// the restore starts at once. Certificates are validated again:
		// their validity depends on the date.
		if g := a.good; g != nil && fp == a.goodFP && string(g.in.Policy) == string(data) && len(g.result.Certs) == 0 {
			return g.result, g.in, nil
		}
		var err error
		if p, err = a.parse(data); err != nil {
			return nil, in, err
		}
		return p.result, p.in, nil
	})
	if err != nil {
		return err
	}
	if p == nil && (a.good == nil || a.goodFP != fp) {
		// Up to date without reading: the file is what was assigned
		// before, by this agent or by apply.
		if p, err = a.parse(data); err != nil {
			return err
		}
	}
	if p != nil {
		a.adopt(p)
	}
	a.badFP = ""
	if rep != nil {
		a.saWake = true
	}
	a.report(rep, same, time.Since(start))
	return nil
}

// adopt makes p the last good policy.
func (a *Agent) adopt(p *policy) {
	if a.good != nil {
		var changed []string
		for _, f := range p.files {
			if h, ok := a.good.hashes[f]; !ok || h != p.hashes[f] {
				changed = append(changed, f)
			}
		}
		if len(changed) > 0 {
			a.logf("%s changed: read again and valid", strings.Join(changed, ", "))
		}
		// A folder's file taken out, or a key file no longer named.
		var gone []string
		for _, f := range a.good.files {
			if _, ok := p.hashes[f]; !ok {
				gone = append(gone, f)
			}
		}
		if len(gone) > 0 {
			a.logf("%s no longer read: the policy read again without %s and valid", strings.Join(gone, ", "), plural(len(gone), "it", "them"))
		}
	}
	if a.good != nil && (a.good.result.Policy != p.result.Policy || a.good.rules != p.rules) {
		a.logf("now enforcing policy %q from %s (%d %s)", p.result.Policy, a.cfg.PolicyFile, p.rules, plural(p.rules, "rule", "rules"))
	}
	a.good, a.goodFP = p, p.fp
	a.refused = nil
	a.pruneRules()
}

// cheapOK is the check between full ones: charon lists every connection
// and secret of g, the last good policy or the current assignment (the
// files are the watcher's). Every FullCheckInterval it says no, and the
// check goes all the way.
func (a *Agent) cheapOK(ctx context.Context, conn *Conn, g *policy) bool {
	if g == nil {
		return false
	}
	if time.Since(a.lastFull) >= a.cfg.FullCheckInterval {
		a.lastFull = time.Now()
		return false
	}
	conns, err := conn.Engine.Daemon.Conns(ctx)
	if err != nil {
		return false
	}
	shared, err := conn.Engine.Daemon.SharedIDs(ctx)
	if err != nil {
		return false
	}
	have := map[string]bool{}
	for _, n := range append(conns, shared...) {
		have[n] = true
	}
	for _, c := range g.result.Conns {
		if !have[c.Name] {
			return false
		}
	}
	for _, s := range g.result.Secrets {
		if !have[s.Name] {
			return false
		}
	}
	return true
}

// report logs what an apply did; nothing when charon was up to date.
func (a *Agent) report(rep *assign.Report, same *assign.Record, took time.Duration) {
	if same != nil || rep == nil || rep.Plan == nil || !rep.Plan.Pending() && rep.LoadConn+rep.UnloadConn+rep.LoadShared+rep.UnloadShared == 0 {
		return
	}
	var restored, drifted, added, changed, removed []string
	for _, r := range rep.Plan.SortedRules() {
		isRestore := false
		for _, c := range r.Conns {
			isRestore = isRestore || (c.Restore && c.Change != assign.Removed)
		}
		name := fmt.Sprintf("%q", r.Rule)
		switch {
		case r.Change == assign.Unchanged:
		case r.Drift:
			drifted = append(drifted, name)
		case isRestore:
			restored = append(restored, name)
		case r.Change == assign.Added:
			added = append(added, name)
		case r.Change == assign.Changed:
			changed = append(changed, name)
		case r.Change == assign.Removed:
			removed = append(removed, name)
		}
	}
	var parts []string
	if len(restored) > 0 {
		parts = append(parts, fmt.Sprintf("restored %d %s charon had lost (%s)", len(restored), plural(len(restored), "rule", "rules"), names(restored)))
	}
	for _, x := range []struct {
		what  string
		rules []string
	}{{"loaded again as swanmgr had loaded it", drifted}, {"added", added}, {"changed", changed}, {"removed", removed}} {
		if len(x.rules) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", x.what, names(x.rules)))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "secrets only")
	}
	policy := rep.Plan.Policy
	a.logf("applied policy %q to charon at %s: %s (%d load-conn, %d unload-conn, %d secrets loaded, %d unloaded, %d SAs torn down) in %v",
		policy, a.cfg.Socket, strings.Join(parts, "; "), rep.LoadConn, rep.UnloadConn, rep.LoadShared, rep.UnloadShared, len(rep.Terminated), took.Round(time.Millisecond))
	for _, w := range rep.Warnings {
		a.logf("warning: %s", w)
	}
}

// maxNames is how many rules one log line names; the rest are counted.
const maxNames = 10

func names(rules []string) string {
	if len(rules) <= maxNames {
		return strings.Join(rules, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(rules[:maxNames], ", "), len(rules)-maxNames)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// watched is the files whose change is a reason to re-read the policy:
// the last good policy's (for a folder, the folder too: its own stat
// changes when a file is added, removed or renamed in it) and, after a
// refusal, the files the refused read was made of or named.
func (a *Agent) watched() []string {
	files := []string{a.cfg.PolicyFile}
	if a.good != nil {
		files = a.good.files
	}
	if len(a.refused) == 0 {
		return files
	}
	seen := make(map[string]bool, len(files)+len(a.refused))
	out := make([]string, 0, len(files)+len(a.refused))
	for _, list := range [][]string{files, a.refused} {
		for _, f := range list {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// watcher fingerprints files cheaply: stat every time, read and hash
// only a file whose inode, size, mode or modification time moved.
type watcher struct {
	seen map[string]fileState
}

// modifiedWithin reports whether a file was modified less than d ago (as
// of the last fingerprint).
func (w *watcher) modifiedWithin(paths []string, d time.Duration) bool {
	for _, p := range paths {
		if m := w.seen[p].mtime; !m.IsZero() && time.Since(m) < d {
			return true
		}
	}
	return false
}

type fileState struct {
	mtime time.Time
	stat  string // inode, size, mode, mtime; "" if missing
	hash  string
	racy  bool // modified too close to when it was hashed to trust the stat
}

// racyWindow: a file modified this close before it was hashed is hashed
// again at the next look, whatever its stat says. File times come from a
// coarse clock, so two writes in a row can leave the same mtime.
const racyWindow = 2 * time.Second

func (w *watcher) fingerprint(paths []string) string {
	if w.seen == nil {
		w.seen = map[string]fileState{}
	}
	sorted := append([]string{}, paths...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, p := range sorted {
		st, mtime := statOf(p)
		old, ok := w.seen[p]
		if !ok || old.stat != st || old.racy {
			nf := fileState{stat: st, mtime: mtime, racy: time.Since(mtime) < racyWindow}
			if b, err := os.ReadFile(p); err == nil {
				sum := sha256.Sum256(b)
				nf.hash = hex.EncodeToString(sum[:])
			}
			w.seen[p] = nf
			old = nf
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", p, old.stat, old.hash)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func statOf(p string) (string, time.Time) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", time.Time{}
	}
	var ino uint64
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return fmt.Sprintf("%d/%d/%o/%d", ino, fi.Size(), fi.Mode(), fi.ModTime().UnixNano()), fi.ModTime()
}
