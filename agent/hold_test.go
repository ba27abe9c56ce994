package agent

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
)

// holdingHarness is an agent whose Hold gives a reason once hold is set,
// as the agent's Hold does while a change is pending confirmation or
// after a revert.
func holdingHarness(t *testing.T, hold *atomic.Bool) *harness {
	t.Helper()
	h := newHarness(t)
	cfg := h.config()
	cfg.Hold = func(context.Context) string {
		if hold.Load() {
			return "FILE is the change reverted at T"
		}
		return ""
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

// recordHas says whether the record's connection carries port.
func (h *harness) recordHas(port string) bool {
	h.t.Helper()
	rec, err := assign.Store{Dir: h.state}.Load(h.srv.Socket())
	return err == nil && rec != nil && len(rec.Conns) > 0 && strings.Contains(rec.Conns[0].View, port)
}

// While holding off, a charon restart is repaired with the current
// assignment — what was last assigned, not the agent's file, which it
// holds off from — and the repair is logged.
func TestHoldingOffStillRestoresTheCurrentAssignment(t *testing.T) {
	var hold atomic.Bool
	h := holdingHarness(t, &hold)
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	hold.Store(true)
	h.eventually("holding off", h.logHas("holding off: FILE is the change reverted at T"))
	// The file the agent holds off from changes: it is not assigned.
	h.write("alice.toml", strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 6669", 1), 0o644)
	h.eventually("watching", func() bool { return h.srv.Subscribers("child-updown") > 0 })
	// charon restarts (strongswan.service restart): everything is gone.
	c := h.client()
	c.UnloadConn(context.Background(), aliceConn)
	c.UnloadShared(context.Background(), h.srv.SharedIDs()[0])
	h.srv.Disconnect()
	h.eventually("the connection and secret are back", func() bool {
		return slices.Contains(h.srv.ConnNames(), aliceConn) && len(h.srv.SharedIDs()) == 1
	})
	h.eventually("the repair is logged", h.logHas(`holding off, but charon did not have all of the current assignment (policy "Alice's IPSec" from `+h.policy+`): assigning it again`))
	h.eventually("the restore is logged", h.logHas(`restored 1 rule charon had lost ("Abczz with Bob")`))
	if !h.recordHas("6667") || h.recordHas("6669") {
		t.Fatalf("while holding off, the agent assigned its file instead of the current assignment\n%s", h.log)
	}
	// A stray unload while holding: repaired at the next checks too.
	c = h.client()
	c.UnloadConn(context.Background(), aliceConn)
	h.eventually("the unloaded connection is back", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	// Hold ends: the file is assigned.
	hold.Store(false)
	h.eventually("the edit is assigned once the hold ends", func() bool { return h.recordHas("6669") })
	h.eventually("the end of the hold is logged", h.logHas("no longer holding off"))
}

// An agent that finds nothing to hold off from when it asks (Hold), but a
// change pending confirmation when it checks again under the apply lock
// (Held), assigns nothing over that change: neither its edited file nor,
// after a full check found charon's copy replaced, its policy again. The
// engine's Precondition stops both, and the agent says why.
func TestHeldUnderTheLockStopsTheApply(t *testing.T) {
	h := newHarness(t)
	h.full = 100 * time.Millisecond
	var held atomic.Bool
	cfg := h.config()
	cfg.Held = func() string {
		if held.Load() {
			return "the apply of OTHER is pending confirmation"
		}
		return ""
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The change being tried is rendered by an agent of its own: the
	// running one's parse state is its goroutine's.
	tried, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.done = make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	held.Store(true)

	// The change being tried replaced the connection (another port).
	p, err := tried.parse([]byte(strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 9999", 1)))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := render.ConnMessage(*p.conn(aliceConn))
	if err != nil {
		t.Fatal(err)
	}
	loads := h.srv.Count("load-conn")
	if err := h.client().LoadConn(context.Background(), aliceConn, msg); err != nil {
		t.Fatal(err)
	}
	h.eventually("the refusal under the lock is logged", h.logHas("holding off: the apply of OTHER is pending confirmation"))
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		h.tick()
	}
	if n := h.srv.Count("load-conn") - loads; n != 1 {
		t.Fatalf("the agent loaded its connection over the change pending confirmation (%d load-conn)\n%s", n-1, h.log)
	}

	// Its file edited: not assigned either.
	h.write("alice.toml", strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 6669", 1), 0o644)
	deadline = time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		h.tick()
	}
	if n := h.srv.Count("load-conn") - loads; n != 1 || h.recordHas("6669") {
		t.Fatalf("the agent assigned its edited file over the change pending confirmation (%d load-conn)\n%s", n-1, h.log)
	}
}
