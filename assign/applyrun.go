package assign

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime/trace"
	"strings"
	"sync"

	"github.com/swanmgr/swanmgr/render"
)

// applyRun is one apply, carried out step by step; each step is one part
// of the safety protocol (see the package documentation):
//
//  1. prepare: the plan, the SAs that exist now, the guard for the time
//     of the apply;
//  2. noteIntent: what is about to be loaded, so a swanmgr killed
//     half-way still owns it;
//  3. loadCredentials: certificates and private keys;
//  4. loadNew: new secrets, then connections, then replaced secrets — a
//     refusal rolls back all of it;
//  5. unloadLeftovers: what the new policy no longer has, kept in the
//     record when it will not unload;
//  6. finish: teardown of old SAs, the new guard, the record.
type applyRun struct {
	e       *Engine
	ctx     context.Context
	rec     *Record
	desired *render.Result
	in      Inputs

	p   *Plan
	key []byte
	// fingerprints are the secrets' fingerprints the plan computed.
	fingerprints map[string]string
	rep          *Report
	before       []LiveSA    // SAs before the change
	g            *guardStep  // the guard while connections change
	undo         rollbackSet // what a rollback puts back
	keyIDs       []string    // private keys the new record owns
	// liveKeys are the private keys charon had before the apply.
	liveKeys []string
	// intent is the pending note as this apply wrote it (noteIntent).
	intent Pending
	newRec *Record
	ahead  *viewsAhead // charon's views, fetched ahead
	// notInstalled: connections charon loaded without installing every
	// child's policies (recorded so that the next apply loads them again).
	notInstalled    map[string]bool
	notInstalledErr *NotInstalledError
}

func (e *Engine) applyLocked(ctx context.Context, rec *Record, desired *render.Result, in Inputs) (*Report, error) {
	return e.apply(ctx, rec, desired, in, e.views(ctx, rec))
}

// apply is applyLocked with charon's views fetched ahead (nil: fetched by
// the plan).
func (e *Engine) apply(ctx context.Context, rec *Record, desired *render.Result, in Inputs, ahead *viewsAhead) (*Report, error) {
	a := &applyRun{e: e, ctx: ctx, rec: rec, desired: desired, in: in, ahead: ahead}
	if err := step(ctx, "prepare", a.prepare); err != nil {
		return nil, err
	}
	if err := step(ctx, "noteIntent", a.noteIntent); err != nil {
		return nil, err
	}
	if err := step(ctx, "loadCredentials", a.loadCredentials); err != nil {
		return nil, err
	}
	a.dropReplaced()
	if err := step(ctx, "loadNew", a.loadNew); err != nil {
		return nil, err
	}
	// The new policy is in place: what is left (the check of the traps,
	// the unloads, the teardown, the guard, the record) is carried out
	// also when ctx is cancelled now (Ctrl-C, --timeout), within a bound,
	// like a rollback; an unload that failed only because of the
	// cancellation would leave the old policy's connections up.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	a.ctx = fctx
	r := trace.StartRegion(ctx, "checkInstalled")
	a.notInstalledErr, a.notInstalled = a.checkInstalled()
	r.End()
	r = trace.StartRegion(ctx, "unloadLeftovers")
	a.unloadLeftovers()
	r.End()
	return a.rep, step(ctx, "finish", a.finish)
}

// prepare computes the plan, lists the SAs a teardown may concern (before
// anything changes, so that none the new settings bring up is taken
// down), and installs the guard of the time of the apply: the new rules'
// drops are in place before their connections load. The guard's change is
// made ready while the plan is made (it depends on the recorded and the
// new guard only; at thousands of rules that takes tens of milliseconds)
// and sent once the plan holds: a plan that fails changes nothing.
func (a *applyRun) prepare() error {
	e := a.e
	type ready struct {
		g       *guardStep
		install func() error
		err     error
	}
	guardc := make(chan ready, 1)
	go func() {
		defer trace.StartRegion(a.ctx, "guardReady").End()
		g, install, err := e.guardReady(a.ctx, a.rec, a.desired.Guard, a.ahead)
		guardc <- ready{g, install, err}
	}()
	err := a.plan()
	b := <-guardc
	if err != nil {
		return err
	}
	if b.err != nil {
		return b.err
	}
	r := trace.StartRegion(a.ctx, "guardBegin")
	err = b.install()
	r.End()
	if err != nil {
		return err
	}
	a.g = b.g
	a.undo.guard = a.g
	return nil
}

// plan is prepare's part with charon: the plan, the secrets charon has
// already, and the SAs before the change.
func (a *applyRun) plan() error {
	e := a.e
	r := trace.StartRegion(a.ctx, "plan")
	p, err := compute(a.ctx, e.Daemon, e.Socket, a.rec, a.desired, a.ahead)
	r.End()
	if err != nil {
		return err
	}
	r = trace.StartRegion(a.ctx, "secrets")
	if a.key, err = e.Store.fingerprintKey(); err != nil {
		return err
	}
	a.fingerprints = keepUnchangedSecrets(p, a.rec, a.key)
	r.End()
	a.p = p
	a.rep = &Report{Plan: p, Warnings: append([]string(nil), p.Warnings...)}
	if p.needsTeardown() {
		r = trace.StartRegion(a.ctx, "liveSAs")
		a.before, err = e.Daemon.LiveSAs(a.ctx, p.teardownQueries())
		r.End()
		if err != nil {
			return err
		}
	}
	return nil
}

// dropReplaced terminates, before swanmgr's connection is loaded again,
// the SAs of a connection someone replaced under swanmgr (drift): they
// were made with the other settings. Loaded first, swanmgr's connection's
// start action puts its CHILD_SAs into such an IKE_SA when charon finds
// it fits, and the teardown after the load took them down with it, which
// left nothing up. In the moment between, the connection's traffic has no
// SA and the guard drops it. One that will not go is left to the teardown
// after the load.
func (a *applyRun) dropReplaced() {
	var drifted []ConnPlan
	for _, c := range a.p.Conns {
		if c.Drift {
			drifted = append(drifted, c)
		}
	}
	if len(drifted) == 0 || len(a.before) == 0 {
		return
	}
	gone := map[uint64]bool{}
	for _, c := range drifted {
		for _, t := range c.targets(a.before) {
			if !t.Whole {
				continue
			}
			if err := a.e.Daemon.TerminateIKE(a.ctx, t.SA.UniqueID); err == nil {
				gone[t.SA.UniqueID] = true
				a.rep.Terminated = append(a.rep.Terminated, t.SA)
				a.undo.dropped = append(a.undo.dropped, t.SA)
			}
		}
	}
	before := a.before[:0:0]
	for _, sa := range a.before {
		if !gone[sa.UniqueID] {
			before = append(before, sa)
		}
	}
	a.before = before
}

// noteIntent records what is about to be loaded (with the views of the
// connections), so that a swanmgr killed half-way still owns it and the
// next run cleans up.
func (a *applyRun) noteIntent() error {
	intent := Pending{Views: map[string]string{}}
	for _, c := range a.p.Conns {
		if c.Change == Added || c.Change == Changed {
			intent.Conns = append(intent.Conns, c.Name)
			intent.Views[c.Name] = viewOfBody(c.New.Body)
		}
	}
	for _, s := range a.p.Secrets {
		intent.Secrets = append(intent.Secrets, s.Name)
	}
	if a.rec != nil {
		// Each name once: compute plans one removal per pending name.
		intent.Conns = appendNew(intent.Conns, a.rec.Pending.Conns...)
		intent.Secrets = appendNew(intent.Secrets, a.rec.Pending.Secrets...)
		intent.Keys = appendNew(intent.Keys, a.rec.Pending.Keys...)
		// Every view sent under a pending name stays acceptable: this
		// apply may stop before its own load of the name, and charon then
		// still holds what an earlier one sent.
		for n, v := range a.rec.Pending.Views {
			earlier := a.rec.Pending.EarlierViews[n]
			if sent, ok := intent.Views[n]; !ok {
				intent.Views[n] = v
			} else if sent != v {
				earlier = appendNew(append([]string(nil), earlier...), v)
			}
			if len(earlier) > 0 {
				if intent.EarlierViews == nil {
					intent.EarlierViews = map[string][]string{}
				}
				intent.EarlierViews[n] = earlier
			}
		}
	}
	a.intent = intent
	if intent.empty() {
		return nil
	}
	if err := a.e.Store.savePending(a.e.Socket, intent); err != nil {
		return a.e.rejected(a.ctx, a.g, "swanmgr's record", err)
	}
	return nil
}

// loadCredentials loads certificates and private keys. charon names a
// key by its public key, so loading a key it already has (loaded by
// someone else) returns an id that is not swanmgr's to unload later.
func (a *applyRun) loadCredentials() error {
	e, ctx := a.e, a.ctx
	for _, c := range a.desired.Certs {
		if err := e.Daemon.LoadCert(ctx, "X509", c.Flag, c.Data); err != nil {
			return e.rejected(ctx, a.g, "certificate "+c.Path, err)
		}
		a.rep.LoadCert++
	}
	liveKeys, err := e.Daemon.Keys(ctx)
	if err != nil {
		return e.rejected(ctx, a.g, "the list of private keys", err)
	}
	a.liveKeys = liveKeys
	for _, k := range a.desired.Keys {
		id, err := e.Daemon.LoadKey(ctx, "any", []byte(k.Data.Reveal()))
		if err != nil {
			return e.rollback(ctx, a.rec, a.undo, "private key "+k.Path, err)
		}
		a.rep.LoadKey++
		switch {
		case a.rec.hasKey(id): // recorded, or pending from an unfinished apply
			a.keyIDs = append(a.keyIDs, id)
		case !contains(liveKeys, id):
			a.keyIDs = append(a.keyIDs, id)
			a.undo.keys = append(a.undo.keys, id)
			// Noted at once: killed before the record, swanmgr still owns
			// the key it added.
			a.intent.Keys = appendNew(a.intent.Keys, id)
			a.undo.note = &a.intent
			if err := e.Store.savePending(e.Socket, a.intent); err != nil {
				return e.rollback(ctx, a.rec, a.undo, "swanmgr's record", err)
			}
		}
	}
	return nil
}

// loadNew loads secrets charon does not have yet first (a connection with
// a start action initiates as soon as it is loaded and needs its key
// then; they can be unloaded again if charon rejects a connection), then
// the added and changed connections, then the secrets charon has with the
// same id (replaced last, so a rejected connection leaves them as they
// were). Any refusal rolls everything back.
func (a *applyRun) loadNew() error {
	e, ctx, p := a.e, a.ctx, a.p
	for _, s := range p.Secrets {
		if p.LiveSecrets[s.Name] {
			continue
		}
		if err := e.Daemon.LoadShared(ctx, s.Name, s.Type, []byte(s.Data.Reveal()), s.Owners); err != nil {
			if mayHaveLoaded(err) {
				a.undo.secrets = append(a.undo.secrets, s.Name)
			}
			return e.rollback(ctx, a.rec, a.undo, secretWhat(s), err)
		}
		a.rep.LoadShared++
		a.undo.secrets = append(a.undo.secrets, s.Name)
	}
	for _, c := range p.Conns {
		if c.Change != Added && c.Change != Changed {
			continue
		}
		msg, err := render.ConnMessage(*c.New)
		if err != nil {
			return e.rollback(ctx, a.rec, a.undo, ruleWhat(c), err)
		}
		if err := e.Daemon.LoadConn(ctx, c.Name, msg); err != nil {
			if mayHaveLoaded(err) {
				// The request went out and no answer came (interrupted,
				// charon went away): charon may have it. It is put back
				// like the loaded ones, and stays owned (pending) if it
				// cannot be seen yet.
				a.undo.maybe = append(a.undo.maybe, c)
			}
			return e.rollback(ctx, a.rec, a.undo, ruleWhat(c), err)
		}
		a.rep.LoadConn++
		a.undo.conns = append(a.undo.conns, c)
	}
	for _, s := range p.Secrets {
		if !p.LiveSecrets[s.Name] {
			continue
		}
		if err := e.Daemon.LoadShared(ctx, s.Name, s.Type, []byte(s.Data.Reveal()), s.Owners); err != nil {
			if mayHaveLoaded(err) {
				// No answer: charon may hold the new value already.
				a.undo.maybeReplaced = append(a.undo.maybeReplaced, s.Name)
			}
			return e.rollback(ctx, a.rec, a.undo, secretWhat(s), err)
		}
		a.rep.LoadShared++
		a.undo.replaced = append(a.undo.replaced, s.Name)
	}
	return nil
}

func secretWhat(s render.Secret) string {
	return fmt.Sprintf("secret %s (for %s)", s.Name, strings.Join(s.Conns, ", "))
}

// unloadLeftovers takes away what the new policy no longer has. What will
// not unload stays in the record, so that the next apply or unassign
// tries again instead of forgetting it is swanmgr's.
func (a *applyRun) unloadLeftovers() {
	e, ctx, p, rec, rep := a.e, a.ctx, a.p, a.rec, a.rep
	a.newRec = &Record{Socket: e.Socket, Source: a.desired.Source, Policy: a.desired.Policy, Backend: string(a.desired.Backend),
		AppliedAt: e.now().UTC(), Keys: a.keyIDs, Inputs: recordInputs(a.key, a.in, string(a.desired.Backend)), Warnings: a.in.Warnings,
		UsesCertificates: len(a.desired.Certs) > 0, GuardHash: a.desired.Guard.Hash()}
	newRec := a.newRec
	for _, c := range p.Conns {
		if c.Change != Removed || c.Restore {
			continue
		}
		if err := e.Daemon.UnloadConn(ctx, c.Name); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("unloading %s: %v (kept in swanmgr's record; the next apply tries again)", ruleWhat(c), err))
			newRec.Conns = append(newRec.Conns, *c.Old)
			newRec.Leftovers = append(newRec.Leftovers, c.Name)
			continue
		}
		rep.UnloadConn++
	}
	for _, id := range p.Stale {
		if err := e.Daemon.UnloadShared(ctx, id); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("unloading secret %s: %v (kept in swanmgr's record; the next apply tries again)", id, err))
			if old := rec.secret(id); old != nil {
				newRec.Secrets = append(newRec.Secrets, *old)
			} else {
				newRec.Secrets = append(newRec.Secrets, RecordSecret{Name: id})
			}
			newRec.Leftovers = append(newRec.Leftovers, id)
			continue
		}
		rep.UnloadShared++
	}
	if rec != nil {
		for _, id := range rec.Keys {
			// A key charon did not have before (it restarted, or the
			// rollback of an unfinished apply unloaded it) is gone already.
			if contains(a.keyIDs, id) || rec.Pending.hasKey(id) && !contains(a.liveKeys, id) {
				continue
			}
			if err := e.Daemon.UnloadKey(ctx, id); err != nil {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("unloading private key %s: %v (kept in swanmgr's record; the next apply tries again)", id, err))
				newRec.Keys = append(newRec.Keys, id)
				newRec.Leftovers = append(newRec.Leftovers, id)
			}
		}
	}
}

// finish tears down the SAs of changed and removed rules, installs the
// new policy's guard (the removed rules' drops go last, when their
// connections are gone) and writes the record. The policy is loaded by
// now: an error here says what of it is not in force.
func (a *applyRun) finish() error {
	e, p, rec, newRec, desired := a.e, a.p, a.rec, a.newRec, a.desired
	r := trace.StartRegion(a.ctx, "teardown")
	teardownErr := e.teardown(a.ctx, p, a.before, a.rep)
	r.End()
	// The new guard goes in while the record is made and its files are
	// written under temporary names; they are put in place once it is
	// (save), so a crash leaves the states it did one after the other.
	guardDone := make(chan error, 1)
	go func() {
		defer trace.StartRegion(a.ctx, "guardEnd").End()
		gctx, gcancel := context.WithTimeout(context.WithoutCancel(a.ctx), rollbackTimeout)
		defer gcancel()
		guardDone <- a.g.end(gctx)
	}()
	waitGuard := sync.OnceValue(func() error { return <-guardDone })
	r = trace.StartRegion(a.ctx, "newRecord")

	var retry map[string][]string
	if te := (*TeardownError)(nil); errors.As(teardownErr, &te) {
		retry = te.retry
	}
	kept := make([]RecordConn, 0, len(p.Conns))
	samePrograms := rec.madeByThisProgram()
	// A leftover was kept as whatever program recorded it did.
	var leftovers map[string]bool
	if rec != nil && len(rec.Leftovers) > 0 {
		leftovers = make(map[string]bool, len(rec.Leftovers))
		for _, n := range rec.Leftovers {
			leftovers[n] = true
		}
	}
	for _, cp := range p.Conns {
		if cp.New == nil {
			if retry[cp.Name] != nil && cp.Old != nil && !contains(newRec.Leftovers, cp.Name) {
				// A removed rule's SA that stayed: the next apply tears it
				// down again (the connection is gone or going: Restore).
				newRec.Conns = append(newRec.Conns, *cp.Old)
				newRec.Leftovers = append(newRec.Leftovers, cp.Name)
			}
			continue
		}
		c := cp.New
		rc := RecordConn{Name: c.Name, Hash: cp.Hash, Origin: c.Origin, Children: c.Children, Body: c.Body}
		if cp.Change == Unchanged && cp.Old != nil && cp.Old.View != "" && samePrograms && !leftovers[c.Name] {
			// The same settings (hash) viewed by the same program.
			rc.View = cp.Old.View
		} else {
			rc.View = viewOfBody(c.Body)
		}
		if a.notInstalled[c.Name] {
			rc.Hash = "" // not in force: the next apply loads it again
		}
		if cp.Change == Unchanged && cp.Old != nil {
			rc.IKEHash, rc.ChildHashes = cp.Old.IKEHash, cp.Old.ChildHashes
		} else {
			rc.IKEHash, rc.ChildHashes = c.IKEHash(), c.ChildHashes()
		}
		if r := retry[c.Name]; r != nil {
			rc = retryTeardown(rc, r)
		}
		kept = append(kept, rc)
	}
	newRec.Conns = append(kept, newRec.Conns...)
	if len(newRec.Conns) == 0 {
		newRec.Conns = nil // none is null in the record, as before the lists were sized
	}
	secrets := make([]RecordSecret, 0, len(desired.Secrets)+len(newRec.Secrets))
	for _, s := range desired.Secrets {
		fp, ok := a.fingerprints[s.Name]
		if !ok {
			fp = fingerprint(a.key, s)
		}
		secrets = append(secrets, RecordSecret{Name: s.Name, Owners: s.Owners, Conns: s.Conns, Fingerprint: fp})
	}
	newRec.Secrets = append(secrets, newRec.Secrets...)
	if len(newRec.Secrets) == 0 {
		newRec.Secrets = nil
	}
	connsChanged := rec == nil || len(newRec.Conns) != len(desired.Conns)
	for _, c := range p.Conns {
		connsChanged = connsChanged || c.Change != Unchanged
	}
	r.End()
	err := step(a.ctx, "save", func() error { return a.save(connsChanged, waitGuard) })
	guardErr := waitGuard()
	if err != nil {
		return err
	}
	if guardErr != nil {
		return guardErr
	}
	if a.notInstalledErr != nil {
		return a.notInstalledErr
	}
	return teardownErr
}

// retryTeardown marks rc so that the next apply loads it again and tears
// down again what stayed up with the old settings (children, or "" for the
// whole IKE_SA): no hash (not in force, so neither unchanged nor the
// shortcut), and the IKE hash or those children's hashes cleared, so that
// the plan counts them changed (see compute).
func retryTeardown(rc RecordConn, children []string) RecordConn {
	rc.Hash = ""
	if contains(children, "") {
		rc.IKEHash = ""
		return rc
	}
	hashes := maps.Clone(rc.ChildHashes)
	if hashes == nil {
		hashes = map[string]string{}
	}
	for _, name := range children {
		hashes[name] = ""
	}
	rc.ChildHashes = hashes
	return rc
}

// save writes the guard's record, the record and its connection settings
// where they changed, and the snapshot of the policy (keepSnapshot): all
// encoded at once, then, once the guard is installed (waitGuard), put in
// place in that order.
func (a *applyRun) save(connsChanged bool, waitGuard func() error) error {
	e, rec, newRec := a.e, a.rec, a.newRec
	if err := e.Store.ensureDir(); err != nil {
		return fmt.Errorf("the policy is loaded, but %w", err)
	}
	var files []jsonFile
	removeGuard := false
	if rec == nil || rec.GuardHash != newRec.GuardHash {
		if a.desired.Guard == nil {
			removeGuard = true
		} else {
			files = append(files, jsonFile{e.Store.path(e.Socket, ".guard.json"), guardFile{a.desired.Guard}})
		}
	}
	// The settings' files of the connections that changed, or all of
	// them when they are not all there (the first apply, or one file of
	// before: removed once they are in place).
	haveBodies := rec != nil && e.Store.hasBodies(e.Socket)
	wroteAll := false
	if connsChanged || !sameRecord(rec, newRec) {
		var shards shardSet
		switch {
		case !haveBodies:
			shards, wroteAll = allShards, true
		case connsChanged:
			for _, c := range a.p.Conns {
				if c.Change != Unchanged {
					shards[bodyShard(c.Name)] = true
				}
			}
		}
		files = append(files, e.Store.recordFiles(newRec, shards)...)
	}
	// The snapshot is only worth a warning: it is staged beside the rest.
	var snap *stagedFiles
	var snapErr error
	staged := make(chan struct{})
	go func() {
		defer close(staged)
		if f := a.snapshotFile(); f != nil {
			snap, snapErr = e.Store.stageJSONs([]jsonFile{*f})
		}
	}()
	st, err := e.Store.stageJSONs(files)
	<-staged
	waitGuard()
	if err == nil && removeGuard {
		err = e.Store.saveGuard(e.Socket, nil)
	}
	if err == nil {
		err = st.commit()
	}
	if err != nil {
		st.discard()
		snap.discard()
		return fmt.Errorf("the policy is loaded, but %w", err)
	}
	if err := e.Store.clearPending(e.Socket); err != nil {
		snap.discard()
		return err
	}
	if wroteAll {
		if err := e.Store.removeLegacyBodies(e.Socket); err != nil {
			a.rep.Warnings = append(a.rep.Warnings, err.Error())
		}
	}
	if err := a.keepSnapshot(snap, snapErr); err != nil {
		a.rep.Warnings = append(a.rep.Warnings, fmt.Sprintf("keeping a copy of the policy for --confirm: %v", err))
	}
	return nil
}

// snapshotFile is the copy of the policy file just assigned that a later
// `apply --confirm` can go back to; nil when there is none to keep (never
// a policy with inline secrets).
func (a *applyRun) snapshotFile() *jsonFile {
	e := a.e
	if a.in.PolicyFile == "" || !a.in.Restorable {
		return nil
	}
	// The path made absolute: the revert runs elsewhere (the watchdog
	// from /, the agent), and the policy's key files are found beside it.
	path := a.in.PolicyFile
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return &jsonFile{e.Store.path(e.Socket, ".policy.json"), &Snapshot{Path: path, Data: a.in.Policy,
		Insecure: a.in.Insecure, Backend: string(a.desired.Backend), At: e.now().UTC()}}
}

// keepSnapshot puts the staged snapshot in place (or forgets the last one
// when this policy is not restorable) and clears the note of an earlier
// revert: there is a new assignment.
func (a *applyRun) keepSnapshot(snap *stagedFiles, snapErr error) error {
	e := a.e
	if a.in.PolicyFile == "" {
		return nil
	}
	err := snapErr
	switch {
	case snap != nil:
		err = snap.commit()
	case err == nil && !a.in.Restorable:
		err = e.Store.RemoveSnapshot(e.Socket)
	}
	if rerr := e.Store.SaveReverted(e.Socket, nil); err == nil {
		err = rerr
	}
	return err
}

// step runs f as a region of the execution trace (SWANMGR_TRACE).
func step(ctx context.Context, name string, f func() error) error {
	defer trace.StartRegion(ctx, name).End()
	return f()
}
