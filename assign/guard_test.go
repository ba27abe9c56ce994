package assign

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/render"
)

// fakeFirewall keeps the live guard like nftables would and notes, for
// each install, how many daemon calls had been made before it.
type fakeFirewall struct {
	mu      sync.Mutex
	d       *fakeDaemon
	live    *guard.Ruleset
	foreign bool // the live table was changed by someone else
	fail    error
	history []install
	warmed  int // Warm calls
	ready   int // PrepareInstall calls
	from    int // PrepareFrom calls
	reads   int // Fingerprint calls
	// installing, when set, runs in each Install that changes the table,
	// before the change counts as made.
	installing func(next *guard.Ruleset)
}

// Warm implements Warmer.
func (f *fakeFirewall) Warm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.warmed++
}

// PrepareInstall implements Preparer: the install, later.
func (f *fakeFirewall) PrepareInstall(_ context.Context, prev, next *guard.Ruleset) (func(context.Context) (bool, error), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready++
	f.reads++ // as netfilter's, it reads the table now
	return func(ctx context.Context) (bool, error) { return f.install(prev, next) }, nil
}

// PrepareFrom implements FromPreparer: the install from prev, later
// (Install replaces a table someone changed, as netfilter's run does).
func (f *fakeFirewall) PrepareFrom(_ context.Context, prev, next *guard.Ruleset) (func(context.Context) (bool, error), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from++
	return func(ctx context.Context) (bool, error) { return f.install(prev, next) }, nil
}

type install struct {
	next       *guard.Ruleset
	afterCalls []string
}

func (f *fakeFirewall) Fingerprint(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.foreign {
		return "edited", nil
	}
	return f.live.Hash(), nil
}

// Install reads the table (reads), as netfilter's does, and installs.
func (f *fakeFirewall) Install(_ context.Context, prev, next *guard.Ruleset) (bool, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	return f.install(prev, next)
}

func (f *fakeFirewall) install(prev, next *guard.Ruleset) (bool, error) {
	if f.installing != nil {
		f.installing(next)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return false, f.fail
	}
	if !f.foreign && f.live.Hash() == next.Hash() {
		return false, nil
	}
	var calls []string
	if f.d != nil {
		calls = append(calls, f.d.calls...)
	}
	f.live, f.foreign = next, false
	f.history = append(f.history, install{next: next, afterCalls: calls})
	return true, nil
}

func fwOf(t *testing.T, e *Engine) *fakeFirewall {
	t.Helper()
	fw, err := e.Firewall()
	if err != nil {
		t.Fatal(err)
	}
	return fw.(*fakeFirewall)
}

func hasEntry(rs *guard.Ruleset, port string) bool {
	if rs == nil {
		return false
	}
	for _, e := range rs.Entries {
		if e.Verdict == guard.Negotiate && strings.Contains(strings.Join(e.Key, " "), " "+port) {
			return true
		}
	}
	return false
}

// The guard of a new rule is in place before its connection loads, the
// guard of a removed rule stays until its connection is gone, and in
// between the guard holds both.
func TestGuardOrderOfOperations(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if len(fw.history) != 1 || len(fw.history[0].afterCalls) != 0 || !hasEntry(fw.live, "6667") {
		t.Fatalf("first apply: guard installs %+v; want one, before any daemon call, guarding 6667", fw.history)
	}
	fw.history = nil
	d.calls = nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6668, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if len(fw.history) != 2 {
		t.Fatalf("changing the port: %d guard installs, want 2 (both, then the new one)", len(fw.history))
	}
	during, after := fw.history[0], fw.history[1]
	if len(during.afterCalls) != 0 || !hasEntry(during.next, "6667") || !hasEntry(during.next, "6668") {
		t.Errorf("while changing: installed after %q, guards 6667 %v 6668 %v; want both before any load",
			during.afterCalls, hasEntry(during.next, "6667"), hasEntry(during.next, "6668"))
	}
	if !strings.Contains(strings.Join(after.afterCalls, "|"), "load-conn sm-with-bob") || hasEntry(after.next, "6667") || !hasEntry(after.next, "6668") {
		t.Errorf("after: installed after %q, guards 6667 %v; want the old port dropped after the load", after.afterCalls, hasEntry(after.next, "6667"))
	}
	rec, _ := e.Store.Load(e.Socket)
	if rec.GuardHash != fw.live.Hash() {
		t.Errorf("record guard %q, live %q", rec.GuardHash, fw.live.Hash())
	}

	d.calls = nil
	fw.history = nil
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if len(fw.history) != 1 || fw.history[0].next != nil || !strings.Contains(strings.Join(fw.history[0].afterCalls, "|"), "unload-conn sm-with-bob") {
		t.Errorf("unassign: %+v; want the guard removed after the connection", fw.history)
	}
}

// The record of an apply is written while its final guard goes in, but
// put in place only once the guard is: a crash in between leaves the
// record of the apply before, as when the two were done one after the
// other.
func TestRecordInPlaceAfterTheGuard(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(e.Store.path(e.Socket, ".json"))
	if err != nil {
		t.Fatal(err)
	}
	final := renderPolicy(t, 6668, false)
	checked := false
	fw.installing = func(next *guard.Ruleset) {
		if next.Hash() != final.Guard.Hash() {
			return // the guard of the time of the apply
		}
		// Wait for the record's files to be staged, then give a record
		// put in place too early the time to show.
		deadline := time.Now().Add(5 * time.Second)
		for {
			staged, _ := filepath.Glob(filepath.Join(e.Store.Dir, ".record-*"))
			if len(staged) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		for range 50 {
			now, _ := os.ReadFile(e.Store.path(e.Socket, ".json"))
			if !bytes.Equal(now, before) {
				t.Error("the record was put in place before the apply's guard was installed")
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		checked = true
	}
	if _, err := e.Apply(ctx, final, Inputs{}); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the apply never installed its final guard")
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil || rec.GuardHash != final.Guard.Hash() {
		t.Fatalf("record after the apply: %v, guard %q; want the new guard", err, rec.GuardHash)
	}
}

// A rejected apply puts the previous guard back.
func TestGuardRestoredWhenRejected(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	before := fw.live.Hash()
	d.rejectC["sm-with-eve"] = true
	_, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) || !re.Restored {
		t.Fatalf("apply with a rejected rule: %v", err)
	}
	if fw.live.Hash() != before {
		t.Errorf("guard after rejection is %q, want the previous %q", fw.live.Hash(), before)
	}
}

// Without nftables a policy with a guard is refused and nothing changes.
func TestGuardUnavailableRefuses(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	e.Firewall = func() (Firewall, error) { return nil, errors.New("nft not found: install nftables") }
	_, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	var ge *GuardError
	if !errors.As(err, &ge) || ge.Loaded || !strings.Contains(err.Error(), "install nftables") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("apply without nftables: %v", err)
	}
	if len(d.calls) != 0 {
		t.Errorf("daemon calls %q, want none", d.calls)
	}
}

// A guard table changed behind swanmgr's back makes the shortcut apply
// in full, which puts it back.
func TestGuardDriftDefeatsShortcut(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	in := Inputs{PolicyFile: "p.toml", Policy: []byte("x")}
	prepare := func() (*render.Result, Inputs, error) { return renderPolicy(t, 6667, false), in, nil }
	if _, _, err := e.Assign(ctx, in, "kernel", prepare); err != nil {
		t.Fatal(err)
	}
	if _, same, err := e.Assign(ctx, in, "kernel", prepare); err != nil || same == nil {
		t.Fatalf("unchanged: same=%v err=%v; want the shortcut", same, err)
	}
	fw.foreign = true
	rep, same, err := e.Assign(ctx, in, "kernel", prepare)
	if err != nil || same != nil || rep == nil {
		t.Fatalf("after the guard table was edited: same=%v err=%v; want a full apply", same, err)
	}
	if fw.foreign || !hasEntry(fw.live, "6667") {
		t.Errorf("guard not put back")
	}
}

// A full apply readies the firewall before it reads the policy (nft's
// set-up then overlaps parsing); the shortcut does not.
func TestAssignWarmsTheFirewallFirst(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	in := Inputs{PolicyFile: "p.toml", Policy: []byte("x")}
	warmedFirst := false
	prepare := func() (*render.Result, Inputs, error) {
		fw.mu.Lock()
		warmedFirst = fw.warmed > 0
		fw.mu.Unlock()
		return renderPolicy(t, 6667, false), in, nil
	}
	if _, _, err := e.Assign(ctx, in, "kernel", prepare); err != nil {
		t.Fatal(err)
	}
	if !warmedFirst {
		t.Error("the policy was read before the firewall was warmed")
	}
	n := fw.warmed
	if _, same, err := e.Assign(ctx, in, "kernel", prepare); err != nil || same == nil {
		t.Fatalf("unchanged: same=%v err=%v; want the shortcut", same, err)
	}
	if fw.warmed != n {
		t.Error("the shortcut warmed the firewall")
	}
}

// Afterward runs under the lock, after the change, with its outcome; its
// error is returned.
func TestAfterwardUnderTheLock(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	in := Inputs{PolicyFile: "p.toml", Policy: []byte("x")}
	prepare := func() (*render.Result, Inputs, error) { return renderPolicy(t, 6667, false), in, nil }
	var got []error
	locked := false
	e.Afterward = func(err error) error {
		got = append(got, err)
		lctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if unlock, lerr := e.Store.Lock(lctx, e.Socket); lerr == nil {
			unlock()
		} else {
			locked = true
		}
		if len(d.conns) == 0 {
			return errors.New("ran before the change")
		}
		return nil
	}
	if _, _, err := e.Assign(ctx, in, "kernel", prepare); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != nil || !locked {
		t.Fatalf("Afterward saw %v, lock held %v; want one nil, under the lock", got, locked)
	}
	failing := func() (*render.Result, Inputs, error) { return nil, in, errors.New("bad policy") }
	e.Afterward = func(err error) error {
		got = append(got, err)
		return errors.New("noted")
	}
	_, _, err := e.Assign(ctx, Inputs{PolicyFile: "p.toml", Policy: []byte("y")}, "kernel", failing)
	if err == nil || !strings.Contains(err.Error(), "bad policy") || !strings.Contains(err.Error(), "noted") || len(got) != 2 || got[1] == nil {
		t.Fatalf("failing assign: %v (Afterward saw %v); want both errors", err, got)
	}
	got = nil
	if _, err := e.Unassign(ctx); err == nil || err.Error() != "noted" || len(got) != 1 || got[0] != nil {
		t.Fatalf("unassign: %v (Afterward saw %v); want Afterward's error after a clean unassign", err, got)
	}
}

// Apply, like Assign and Unassign, runs Precondition and Afterward under
// the lock (it ran neither: the agent's repairs went around them).
func TestApplyRunsPreconditionAndAfterward(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	stop := errors.New("held")
	e.Precondition = func() error { return stop }
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); !errors.Is(err, stop) || len(d.calls) != 0 {
		t.Fatalf("apply with a failing precondition: %v, calls %q; want it stopped before anything", err, d.calls)
	}
	e.Precondition = nil
	var seen []error
	e.Afterward = func(err error) error { seen = append(seen, err); return nil }
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil || len(seen) != 1 || seen[0] != nil {
		t.Fatalf("apply: %v, Afterward saw %v", err, seen)
	}
}

// The snapshot a revert goes back to names the policy file by its
// absolute path: the watchdog runs from /, and the policy's key files are
// found beside it.
func TestSnapshotPathIsAbsolute(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	in := Inputs{PolicyFile: "policy.toml", Policy: []byte("x"), Restorable: true}
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), in); err != nil {
		t.Fatal(err)
	}
	snap, err := e.Store.LoadSnapshot(e.Socket)
	if err != nil || snap == nil {
		t.Fatalf("snapshot: %v, %v", snap, err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "policy.toml"); snap.Path != want {
		t.Errorf("snapshot path %q, want %q", snap.Path, want)
	}
}

// An early prepare's plan (apply -o json) and the apply open the
// firewall at the same time: one is opened, and both get it.
func TestFirewallOpenedOnceForConcurrentCallers(t *testing.T) {
	var mu sync.Mutex
	opened := 0
	e := &Engine{Firewall: func() (Firewall, error) {
		mu.Lock()
		opened++
		mu.Unlock()
		return &fakeFirewall{}, nil
	}}
	const n = 8
	got := make([]Firewall, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fw, err := e.firewall()
			if err != nil {
				t.Error(err)
			}
			got[i] = fw
		}()
	}
	wg.Wait()
	if opened != 1 {
		t.Errorf("the firewall was opened %d times, want once", opened)
	}
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("caller %d got another firewall", i)
		}
	}
}

// The guard's change is made ready while the plan is made, but sent only
// once the plan holds: a plan that fails (names swanmgr did not load)
// leaves the guard as it was, and its error is what the apply returns.
func TestPlanThatFailsChangesNoGuard(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	before := fw.live.Hash()
	fw.history = nil
	d.conns["sm-with-eve"] = "loaded by hand"
	_, err := e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("apply over a connection loaded by hand: %v; want the plan's ConflictError", err)
	}
	if fw.live.Hash() != before || len(fw.history) != 0 {
		t.Errorf("after the failed plan: %d guard installs, live %q; want none, the previous %q", len(fw.history), fw.live.Hash(), before)
	}
	if fw.ready != 2 {
		t.Errorf("the guard's change was made ready %d times in two applies, want 2 (beside each plan)", fw.ready)
	}
	if d.conns["sm-with-eve"] != "loaded by hand" {
		t.Error("the connection loaded by hand was replaced")
	}
}

// The guard's last change (the removed rules' drops out) is made while
// the connections load, from the table the first change made, without
// reading the table again: one read of the live table in an apply that
// changes the guard, and the table is the new policy's.
func TestGuardEndMadeFromTheFirstChange(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	fw := fwOf(t, e)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	fw.reads, fw.from, fw.history = 0, 0, nil
	next := renderPolicy(t, 6668, false)
	if _, err := e.Apply(ctx, next, Inputs{}); err != nil {
		t.Fatal(err)
	}
	if fw.from != 1 || fw.reads != 1 {
		t.Errorf("the last change made from the first %d times, the table read %d times; want once each", fw.from, fw.reads)
	}
	if len(fw.history) != 2 || fw.live.Hash() != next.Guard.Hash() {
		t.Errorf("%d installs, live %q; want 2 (both policies, then the new), ending in %q", len(fw.history), fw.live.Hash(), next.Guard.Hash())
	}
}
