package assign

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/vici"
)

// A load-conn whose answer never came may have been carried out: the
// rollback takes the connection away like the loaded ones, and the next
// apply of the same file goes ahead (before, the connection stayed loaded,
// unowned, and every later apply was refused as a conflict).
func TestLostAnswerIsRolledBack(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.lostAnswer = map[string]bool{"sm-with-eve": true}
	_, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) || !re.Restored {
		t.Fatalf("apply with a lost answer: %v", err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("the connection whose answer was lost is still loaded after the rollback")
	}
	d.lostAnswer = nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatalf("the next apply: %v", err)
	}
}

// If charon does not show the connection (yet), swanmgr keeps owning the
// name: when it shows up later, the next apply takes it over and the next
// unassign removes it.
func TestLostAnswerNotVisibleStaysOwned(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.lostAnswer = map[string]bool{"sm-with-eve": true}
	// charon has not processed it yet when the rollback looks.
	hide := true
	d.hideConn = func(name string) bool { return hide && name == "sm-with-eve" }
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err == nil {
		t.Fatal("apply with a lost answer succeeded")
	}
	hide = false // now charon shows it
	rec, err := e.Store.Load(e.Socket)
	if err != nil || rec == nil || !rec.pendingConn("sm-with-eve") {
		t.Fatalf("the name is not kept as swanmgr's (pending): %+v %v", rec, err)
	}
	d.lostAnswer = nil
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("unassign left the connection whose answer was lost")
	}
}

// charon going away mid-apply is said so, and hundreds of failed restore
// steps are summarized instead of packed into one line.
func TestCharonGoneIsSummarized(t *testing.T) {
	var restore []error
	for i := 0; i < 723; i++ {
		restore = append(restore, fmt.Errorf("sm-r%d: unload-conn: %w", i, vici.ErrUnreachable))
	}
	err := &RejectedError{What: `rule "R1" (connection sm-r1)`, Err: fmt.Errorf("load-conn: %w", vici.ErrDisconnected), RestoreErrs: restore}
	msg := err.Error()
	for _, want := range []string{"charon went away while swanmgr was loading rule \"R1\"", "723 steps", "and 720 more", "the next apply"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if len(msg) > 1000 {
		t.Errorf("message is %d bytes long", len(msg))
	}
}

// A trap charon did not install (an unresolvable DNS name, say): apply
// says so with the rule and fails, and the next apply loads the
// connection again instead of calling it unchanged.
func TestNotInstalledIsReported(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	d.noTrap = map[string]bool{"sm-with-eve-1": true}
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var ne *NotInstalledError
	if !errors.As(err, &ne) || rep == nil || len(ne.Children) != 1 || !strings.Contains(err.Error(), `rule "With Eve" (sm-with-eve-1)`) {
		t.Fatalf("apply with a trap not installed: %v", err)
	}
	p, err := e.Plan(ctx, renderPolicy(t, 6667, true))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Rules {
		if r.Rule == "With Eve" && r.Change == Unchanged {
			t.Fatal("the rule whose trap was not installed plans as unchanged")
		}
	}
	d.noTrap = nil
	d.calls, d.installedAsked = nil, nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatalf("the next apply: %v", err)
	}
	if d.count("load-conn") != 1 {
		t.Fatalf("the next apply sent %q; want the connection loaded again", d.calls)
	}
	// Only the children just loaded are asked about.
	if !slices.Equal(d.installedAsked, []string{"sm-with-eve-1"}) {
		t.Errorf("the next apply asked for the installed policies of %q; want sm-with-eve-1 only", d.installedAsked)
	}
}
