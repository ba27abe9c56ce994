package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// Holding off (Config.Hold: a change made with --confirm is pending, or
// the policy file is the change that was reverted) means not assigning
// the policy file; it does not mean leaving charon without swanmgr's
// connections. While holding, the agent keeps charon at the current
// assignment — what the last apply assigned and kept a copy of (the
// change being tried while it is pending, the previous assignment after
// a revert) — so that a charon restart or a stray `swanctl --load-all`
// is repaired as usual.

// heldError stops an apply of the policy file under the lock: Held gave
// a reason there that Hold had not given before.
type heldError struct{ why string }

func (e *heldError) Error() string { return "holding off: " + e.why }

// errAssignmentMoved stops an apply of the current assignment whose copy
// changed before the lock was taken (someone applied meanwhile).
var errAssignmentMoved = errors.New("the current assignment changed meanwhile")

// heldPolicy is the current assignment, as read from its snapshot.
type heldPolicy struct {
	snap    *assign.Snapshot
	file    os.FileInfo // the snapshot's file when it was read
	backend render.Backend
	p       *policy
}

// unchanged says whether the snapshot file is still the one h was read
// from: the snapshot is replaced by renaming a new file into place.
func (h *heldPolicy) unchanged(fi os.FileInfo) bool {
	return h.file != nil && fi != nil && os.SameFile(h.file, fi) && h.file.Size() == fi.Size() && h.file.ModTime().Equal(fi.ModTime())
}

// checkUnderLock gives conn's engine the agent's Precondition (after any
// it has): an apply of the policy file goes ahead only if Held gives no
// reason under the lock, an apply of the current assignment only if it is
// still the current one.
func (a *Agent) checkUnderLock(conn *Conn) {
	if conn.Engine == nil {
		return
	}
	store, sock := conn.Engine.Store, conn.Engine.Socket
	outer := conn.Engine.Precondition
	conn.Engine.Precondition = func() error {
		if outer != nil {
			if err := outer(); err != nil {
				return err
			}
		}
		if keep := a.keeping; keep != nil {
			cur, err := store.LoadSnapshot(sock)
			if err != nil {
				return err
			}
			if !assign.SameSnapshot(cur, keep) {
				return errAssignmentMoved
			}
			return nil
		}
		if a.cfg.Held != nil {
			if why := a.cfg.Held(); why != "" {
				return &heldError{why}
			}
		}
		// The assignment this apply may replace, kept if it does: an
		// apply --confirm of the file just assigned goes back to it.
		a.mark.Close()
		a.mark, _ = store.MarkSnapshot(sock)
		return nil
	}
	outerAfter := conn.Engine.Afterward
	conn.Engine.Afterward = func(err error) error {
		var after error
		if outerAfter != nil {
			after = outerAfter(err)
		}
		m := a.mark
		a.mark = nil
		defer m.Close()
		if err == nil {
			if _, kerr := store.KeepReplaced(sock, m, true); kerr != nil {
				a.logf("keeping the assignment replaced, for an apply --confirm to go back to: %v", kerr)
			}
		}
		return after
	}
}

// holding asks Hold and logs when the answer changes; it returns the
// reason ("" when the agent does not hold off).
func (a *Agent) holding(ctx context.Context) string {
	if a.cfg.Hold == nil {
		return ""
	}
	a.noteHold(a.cfg.Hold(ctx))
	return a.hold
}

// noteHold records why the agent holds off, logging a change.
func (a *Agent) noteHold(why string) {
	if why == a.hold {
		return
	}
	if why != "" {
		a.logf("holding off: %s; charon is kept at the current assignment meanwhile", why)
	} else {
		a.logf("no longer holding off: converging with %s again", a.cfg.PolicyFile)
		a.held, a.heldNote = nil, ""
	}
	a.hold = why
}

// keepCurrent is converge while holding off: charon gets the current
// assignment again where it lost part of it; nothing else changes.
func (a *Agent) keepCurrent(ctx context.Context, conn *Conn, force bool) error {
	h, err := a.current(conn)
	if err != nil || h == nil {
		return err
	}
	if !force && a.cheapOK(ctx, conn, h.p) {
		return nil
	}
	a.keeping = h.snap
	defer func() { a.keeping = nil }()
	start := time.Now()
	rep, same, err := conn.Engine.Assign(ctx, h.p.in, string(a.backend), func() (*render.Result, assign.Inputs, error) {
		return h.p.result, h.p.in, nil
	})
	if errors.Is(err, errAssignmentMoved) {
		return nil // read again at the next check
	}
	if err != nil {
		return err
	}
	if rep != nil {
		a.saWake = true
		a.logf("holding off, but charon did not have all of the current assignment (policy %q from %s): assigning it again", h.p.result.Policy, h.snap.Path)
	}
	a.report(rep, same, time.Since(start))
	return nil
}

// current reads the current assignment from the engine's record and
// snapshot; nil when nothing is assigned or it cannot be read back (then
// said once).
func (a *Agent) current(conn *Conn) (*heldPolicy, error) {
	store, sock := conn.Engine.Store, conn.Engine.Socket
	// The snapshot goes with the record (unassign removes both): the
	// record, megabytes at thousands of rules, is read only without one,
	// to say why.
	fi, err := store.SnapshotFile(sock)
	if err != nil {
		return nil, err
	}
	if h := a.held; h != nil && h.backend == a.backend && h.unchanged(fi) {
		// Not read again at every check (2 MB at 5,000 rules).
		return h, nil
	}
	snap, err := store.LoadSnapshot(sock)
	if err != nil {
		return nil, err
	}
	if snap == nil {
		a.held = nil
		rec, err := store.Load(sock)
		if err != nil || rec == nil {
			return nil, err
		}
		a.noteHeld(fmt.Sprintf("the current assignment (policy %q) has no copy to assign again from (its preshared keys are written inline, or an older swanmgr applied it): it is not repaired while holding off", rec.Policy))
		return nil, nil
	}
	if h := a.held; h != nil && h.backend == a.backend && assign.SameSnapshot(h.snap, snap) {
		h.file = fi
		return h, nil
	}
	p, err := a.parseSnapshot(snap)
	if err != nil {
		a.held = nil
		a.noteHeld(fmt.Sprintf("the current assignment (from %s) does not read back (%v): it is not repaired while holding off", snap.Path, err))
		return nil, nil
	}
	a.held = &heldPolicy{snap: snap, file: fi, backend: a.backend, p: p}
	a.heldNote = ""
	return a.held, nil
}

func (a *Agent) noteHeld(msg string) {
	if msg != a.heldNote {
		a.heldNote = msg
		a.logf("%s", msg)
	}
}

// parseSnapshot reads, validates and renders a snapshot as the revert
// does: its key files are read again.
func (a *Agent) parseSnapshot(snap *assign.Snapshot) (*policy, error) {
	opts := a.cfg.Validate
	opts.InsecureSecrets = snap.Insecure
	asg, warns, err := model.ParseValidate(snap.Path, snap.Data, opts)
	if err != nil {
		return nil, err
	}
	res, err := render.Render(asg, render.Options{Backend: a.backend})
	if err != nil {
		return nil, err
	}
	return newPolicy(snap.Path, snap.Data, snap.Insecure, asg, warns, res), nil
}
