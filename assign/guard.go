package assign

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/swanmgr/swanmgr/guard"
)

// Firewall is the guard's nftables table in charon's network namespace
// (netfilter.Table).
type Firewall interface {
	// Fingerprint is the hash of the ruleset the live table was made
	// from, "" when there is none.
	Fingerprint(ctx context.Context) (string, error)
	// Install makes the live table next (nil removes it) in one atomic
	// transaction, patching from prev when the live table is prev.
	Install(ctx context.Context, prev, next *guard.Ruleset) (bool, error)
}

// Preparer is a Firewall that can make an Install's change ahead of
// sending it: PrepareInstall reads the live table and makes the change
// (changing nothing), run sends it as Install would have then.
type Preparer interface {
	PrepareInstall(ctx context.Context, prev, next *guard.Ruleset) (run func(context.Context) (bool, error), err error)
}

// FromPreparer is a Firewall that can make a change from the table it has
// just installed without reading the table again: PrepareFrom is
// PrepareInstall with the live table taken to be prev, run replacing the
// table whole when it is not. The apply makes its last change (the
// removed rules' drops taken out) this way while charon loads.
type FromPreparer interface {
	PrepareFrom(ctx context.Context, prev, next *guard.Ruleset) (run func(context.Context) (bool, error), err error)
}

// Warmer is a Firewall that can get ready for a change ahead of it
// (netfilter.Table checks nft, about 50 ms), in the background.
type Warmer interface {
	Warm()
}

// warmFirewall readies the firewall for the Install an apply is likely
// to make; a firewall that cannot be opened is left to the apply to
// report, if its policy needs one.
func (e *Engine) warmFirewall() {
	if e.Firewall == nil {
		return
	}
	if fw, err := e.firewall(); err == nil {
		if w, ok := fw.(Warmer); ok {
			w.Warm()
		}
	}
}

// GuardError says the guard could not be put in place; with Loaded the
// new policy's connections are loaded and the guard still enforces the
// old and the new policy together (never less than either).
type GuardError struct {
	Err    error
	Loaded bool
}

func (e *GuardError) Error() string {
	if e.Loaded {
		return fmt.Sprintf("the policy is loaded, but its guard could not be updated: %v; the guard still drops what the previous or the new policy protects or blocks; apply again", e.Err)
	}
	return fmt.Sprintf("the guard that keeps protected traffic from leaving in clear could not be installed: %v; nothing was changed", e.Err)
}

func (e *GuardError) Unwrap() error { return e.Err }

// Close releases what the engine opened (the guard table's namespace).
func (e *Engine) Close() error {
	e.fwMu.Lock()
	defer e.fwMu.Unlock()
	if c, ok := e.fw.(interface{ Close() error }); ok {
		e.fw = nil
		return c.Close()
	}
	return nil
}

// firewall opens the guard's table once per engine.
func (e *Engine) firewall() (Firewall, error) {
	// An early prepare's plan (-o json) and the apply may both ask.
	e.fwMu.Lock()
	defer e.fwMu.Unlock()
	if e.fw != nil {
		return e.fw, nil
	}
	if e.Firewall == nil {
		return nil, errors.New("this swanmgr has no access to nftables")
	}
	fw, err := e.Firewall()
	if err != nil {
		return nil, err
	}
	e.fw = fw
	return fw, nil
}

// guardStep is the guard's part of one apply: what was installed before
// it (prev), while connections change (during: at least as strict as
// both), and after (next).
type guardStep struct {
	fw                 Firewall
	prev, during, next *guard.Ruleset
	active             bool // during is installed
	// endReady, when the Firewall is a FromPreparer, gives the change
	// from during to next, made once during is installed.
	endReady chan preparedRun
}

type preparedRun struct {
	run func(context.Context) (bool, error)
	err error
}

// guardBegin installs the guard for the time of the apply, before any
// connection changes: the new rules' drops are in place before their
// connections load, the old rules' stay until theirs are gone.
func (e *Engine) guardBegin(ctx context.Context, rec *Record, next *guard.Ruleset, ahead *viewsAhead) (*guardStep, error) {
	g, install, err := e.guardReady(ctx, rec, next, ahead)
	if err != nil {
		return nil, err
	}
	return g, install()
}

// guardReady is guardBegin up to the install, which install then sends
// (nothing is changed before it): the rulesets read and merged and, with
// a Preparer, the live table read and the change made. An apply does this
// while the plan is made, and installs only once the plan holds.
func (e *Engine) guardReady(ctx context.Context, rec *Record, next *guard.Ruleset, ahead *viewsAhead) (*guardStep, func() error, error) {
	prev, ok, err := ahead.recordedGuard()
	if !ok {
		prev, err = e.Store.LoadGuard(rec)
	}
	if err != nil {
		return nil, nil, err
	}
	if prev == nil && next == nil {
		return &guardStep{}, func() error { return nil }, nil
	}
	fw, err := e.firewall()
	if err != nil {
		return nil, nil, &GuardError{Err: err}
	}
	g := &guardStep{fw: fw, prev: prev, next: next, during: guard.Merge(prev, next)}
	run := func(ctx context.Context) (bool, error) { return fw.Install(ctx, prev, g.during) }
	if p, ok := fw.(Preparer); ok {
		if run, err = p.PrepareInstall(ctx, prev, g.during); err != nil {
			return nil, nil, &GuardError{Err: err}
		}
	}
	return g, func() error {
		if _, err := run(ctx); err != nil {
			return &GuardError{Err: err}
		}
		g.active = true
		if p, ok := fw.(FromPreparer); ok {
			// The last change made while the connections load.
			g.endReady = make(chan preparedRun, 1)
			go func() {
				run, err := p.PrepareFrom(ctx, g.during, g.next)
				g.endReady <- preparedRun{run, err}
			}()
		}
		return nil
	}, nil
}

// guardEnd installs the new policy's guard, dropping the removed rules'
// entries last.
func (g *guardStep) end(ctx context.Context) error {
	if g == nil || !g.active {
		return nil
	}
	var err error
	if p := g.prepared(); p.run != nil {
		_, err = p.run(ctx)
	} else {
		_, err = g.fw.Install(ctx, g.during, g.next)
	}
	if err != nil {
		return &GuardError{Err: err, Loaded: true}
	}
	g.active = false
	return nil
}

// prepared is the change from during to next made ahead (no run when
// there is none, or it could not be made: Install then does it).
func (g *guardStep) prepared() preparedRun {
	if g.endReady == nil {
		return preparedRun{}
	}
	p := <-g.endReady
	g.endReady = nil
	if p.err != nil {
		return preparedRun{}
	}
	return p
}

// restore puts the previous guard back after a rejected apply (run on a
// context that survives cancellation).
func (g *guardStep) restore(ctx context.Context) error {
	if g == nil || !g.active {
		return nil
	}
	if _, err := g.fw.Install(ctx, g.during, g.prev); err != nil {
		return fmt.Errorf("the guard: %w (it still enforces the old and the new policy together)", err)
	}
	g.active = false
	return nil
}

// loadGuard reads the recorded guard ruleset of a socket.
func (s Store) loadGuard(socket string) (*guard.Ruleset, error) {
	b, err := readState(s.path(socket, ".guard.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading swanmgr's record of the guard: %w", err)
	}
	var rs guard.Ruleset
	if err := decodeGuard(b, &rs); err != nil {
		return nil, fmt.Errorf("reading swanmgr's record of the guard: %w", err)
	}
	return &rs, nil
}

// LoadGuard returns the guard ruleset swanmgr installed for the record's
// socket, nil when there is none.
func (s Store) LoadGuard(r *Record) (*guard.Ruleset, error) {
	if r == nil || r.GuardHash == "" {
		return nil, nil
	}
	return s.loadGuard(r.Socket)
}

// saveGuard records the guard ruleset (nil removes the record of it).
func (s Store) saveGuard(socket string, rs *guard.Ruleset) error {
	if rs == nil {
		err := os.Remove(s.path(socket, ".guard.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing swanmgr's record of the guard: %w", err)
		}
		return nil
	}
	return s.writeJSON(s.path(socket, ".guard.json"), guardFile{rs})
}

// guardUpToDate reports whether the live guard is the recorded one.
func (e *Engine) guardUpToDate(ctx context.Context, rec *Record) (bool, error) {
	if rec.GuardHash == "" {
		return true, nil
	}
	fw, err := e.firewall()
	if err != nil {
		return false, nil // the full apply says what is wrong
	}
	live, err := fw.Fingerprint(ctx)
	if err != nil {
		return false, err
	}
	if live == rec.GuardHash {
		return true, nil
	}
	// A recorded guard of an earlier Format that a rollback installed the
	// way this swanmgr does (rare: read the record only then).
	rs, err := e.Store.LoadGuard(rec)
	if err != nil || rs == nil || rs.Format == guard.Format {
		return false, err
	}
	return rs.Live(live), nil
}

// planGuard says what an apply of next would do to the guard.
func (e *Engine) planGuard(ctx context.Context, rec *Record, next *guard.Ruleset) (GuardPlan, error) {
	var g GuardPlan
	prev, err := e.Store.LoadGuard(rec)
	if err != nil {
		return g, err
	}
	if next != nil {
		g.Guarded, g.Entries = len(next.Guarded()), len(next.Entries)
	}
	if prev == nil && next == nil {
		return g, nil
	}
	g.Remove = next == nil
	fw, err := e.firewall()
	if err != nil {
		return g, &GuardError{Err: err}
	}
	live, err := fw.Fingerprint(ctx)
	if err != nil {
		return g, err
	}
	if prev != nil && prev.Format != guard.Format && prev.Live(live) {
		prev = guard.Current(prev)
	}
	if prev == nil || live != prev.Hash() {
		g.Drift = live != next.Hash()
		if g.Drift && next != nil {
			g.Added = len(next.Entries)
		}
		return g, nil
	}
	g.Added, g.Removed = guard.Changes(prev, next)
	return g, nil
}
