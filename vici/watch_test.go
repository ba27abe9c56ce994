package vici_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// recv reads one event, failing the test if none arrives in time (a guard
// against hanging, not a wait for a condition).
func recv(t *testing.T, ch <-chan vici.Event) (vici.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return vici.Event{}, false
	}
}

func TestWatch(t *testing.T) {
	srv, c := newClient(t)
	events, err := c.Watch(context.Background(), "ike-updown", "child-updown")
	if err != nil {
		t.Fatal(err)
	}
	// Watch returns once charon confirmed the registration.
	if n := srv.Subscribers("ike-updown"); n != 1 {
		t.Fatalf("%d subscribers for ike-updown", n)
	}

	up := ikeSA("alice-bob", 3, 0)
	up.Set("up", "yes")
	// "up" follows the IKE_SA section here: parsing must not depend on order.
	if n := srv.Emit("ike-updown", up); n != 1 {
		t.Fatalf("ike-updown went to %d clients", n)
	}
	down := ikeSA("alice-bob", 3, 1)
	srv.Emit("child-updown", down)
	srv.Emit("ike-rekey", msg("x", msg())) // not subscribed: never delivered

	ev, ok := recv(t, events)
	if !ok || ev.Name != "ike-updown" || !ev.Up() || ev.Time.IsZero() {
		t.Fatalf("first event %+v, %v", ev, ok)
	}
	sas, err := ev.IKESAs()
	if err != nil || len(sas) != 1 || sas[0].Name != "alice-bob" || sas[0].UniqueID != 3 {
		t.Errorf("IKESAs() = %+v, %v", sas, err)
	}
	ev, ok = recv(t, events)
	if !ok || ev.Name != "child-updown" || ev.Up() {
		t.Fatalf("second event %+v, %v", ev, ok)
	}
	if sas, err := ev.IKESAs(); err != nil || len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Errorf("IKESAs() = %+v, %v", sas, err)
	}

	// The daemon goes away: the channel closes.
	srv.Disconnect()
	for {
		ev, ok := recv(t, events)
		if !ok {
			break
		}
		t.Errorf("unexpected event %s", ev.Name)
	}
}

func TestWatchManyEventsSlowReader(t *testing.T) {
	var queued atomic.Int64
	defer vici.CountQueued(&queued)()
	srv, c := newClient(t)
	events, err := c.Watch(context.Background(), "log")
	if err != nil {
		t.Fatal(err)
	}
	// Emit everything before reading anything: five times what govici's
	// channel buffer holds, so only the pump's queue keeps them all. Each
	// burst is half the buffer and the next waits until the pump took the
	// last: govici itself drops events that find its channel full, so a
	// burst larger than the buffer may lose some however fast the pump is.
	n := 5 * vici.WatchBuffer
	burst := vici.WatchBuffer / 2
	for i := range n {
		srv.Emit("log", msg("group", "IKE", "level", "1", "msg", "line", "thread", i))
		if (i+1)%burst == 0 || i+1 == n {
			waitFor(t, func() bool { return queued.Load() == int64(i+1) })
		}
	}
	for i := range n {
		ev, ok := recv(t, events)
		if !ok {
			t.Fatalf("channel closed after %d events", i)
		}
		if got := ev.Message.Get("thread"); got != itoa(i) {
			t.Fatalf("event %d has thread %v", i, got)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func itoa(i int) string {
	return msg("n", i).Get("n").(string)
}

func TestWatchEndsWithContext(t *testing.T) {
	_, c := newClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	events, err := c.Watch(ctx, "ike-updown")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range events {
	}
	// The watcher's session is gone; commands still work.
	if _, err := c.Version(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWatchUnknownEvent(t *testing.T) {
	_, c := newClient(t)
	_, err := c.Watch(context.Background(), "bogus")
	if !errors.Is(err, vici.ErrUnsupported) {
		t.Errorf("error %v does not match ErrUnsupported", err)
	}
	if want := "watch: charon: unknown event type: bogus"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// An event that charon raises between a registration and its confirmation
// stalls govici's Subscribe for good: Watch gives up on that session
// within the subscribe timeout, counts it, and the Client stays usable.
func TestWatchEventBeforeConfirm(t *testing.T) {
	srv := vicitest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := vici.Dial(ctx, srv.Socket(), vici.WithSubscribeTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv.EmitBeforeConfirm("ike-updown", msg("x", msg("uniqueid", "1")))

	type result struct {
		ch  <-chan vici.Event
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		ch, err := c.Watch(context.Background(), "ike-updown")
		done <- result{ch, err}
	}()
	select {
	case r := <-done:
		if !errors.Is(r.err, vici.ErrSubscribeHung) {
			t.Fatalf("Watch = %v, %v; want ErrSubscribeHung", r.ch, r.err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Watch took %v to give up", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still waits for the stalled subscription after 5 s")
	}
	if n := c.AbandonedSubscriptions(); n != 1 {
		t.Errorf("AbandonedSubscriptions() = %d, want 1", n)
	}

	// The next subscription (no event in between) works on the same Client.
	events, err := c.Watch(ctx, "ike-updown")
	if err != nil {
		t.Fatal(err)
	}
	srv.Emit("ike-updown", msg("up", "yes", "y", msg("uniqueid", "2")))
	if ev, ok := recv(t, events); !ok || ev.Name != "ike-updown" {
		t.Fatalf("event %+v, %v", ev, ok)
	}
	if n := c.AbandonedSubscriptions(); n != 1 {
		t.Errorf("AbandonedSubscriptions() = %d after a good Watch", n)
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close blocks")
	}
	if _, ok := recv(t, events); ok {
		t.Error("events still open after Close")
	}
}

// A subscription ended by its context is not counted as abandoned.
func TestWatchCancelledNotAbandoned(t *testing.T) {
	srv := vicitest.NewServer(t)
	c, err := vici.Dial(context.Background(), srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Watch(ctx, "ike-updown"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch with a cancelled context: %v", err)
	}
	if n := c.AbandonedSubscriptions(); n != 0 {
		t.Errorf("AbandonedSubscriptions() = %d", n)
	}
}
