package assign

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"
)

// replaceConn replaces a connection in the fake charon by one with other
// selectors, as someone loading it over VICI would.
func replaceConn(t *testing.T, d *fakeDaemon, name, remoteTS string) {
	t.Helper()
	child := govici.NewMessage()
	child.Set("mode", "transport")
	child.Set("local_ts", []string{"dynamic"})
	child.Set("remote_ts", []string{remoteTS})
	children := govici.NewMessage()
	children.Set(name+"-1", child)
	m := govici.NewMessage()
	m.Set("remote_addrs", []string{"172.31.67.244"})
	m.Set("children", children)
	d.mu.Lock()
	d.conns[name] = "replaced by hand"
	d.msgs[name] = m
	d.mu.Unlock()
}

// One of swanmgr's connections replaced over VICI with other settings:
// plan shows the drift, apply loads swanmgr's settings again (before,
// plan said "no changes" and apply kept the foreign copy).
func TestDriftIsRepaired(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	replaceConn(t, d, "sm-with-bob", "dynamic[tcp/22]")
	p, err := e.Plan(ctx, renderPolicy(t, 6667, false))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Pending() || len(p.Rules) != 1 || !p.Rules[0].Drift || p.Rules[0].Change != Changed {
		t.Fatalf("plan after a replacement: pending %v, rules %+v; want the rule as drift", p.Pending(), p.Rules)
	}
	d.calls = nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if d.count("load-conn") != 1 || !strings.Contains(d.conns["sm-with-bob"], "6667") {
		t.Fatalf("apply after a replacement sent %q; want swanmgr's connection loaded again", d.calls)
	}
	// And then nothing more.
	p, err = e.Plan(ctx, renderPolicy(t, 6667, false))
	if err != nil || p.Pending() {
		t.Fatalf("plan after the repair: pending %v, %v", p.Pending(), err)
	}
}

// A pending name (from a swanmgr killed mid-apply) that charon now has
// with other settings is not swanmgr's: apply neither unloads nor
// replaces it (before, it unloaded the foreign connection).
func TestPendingNameTakenByOthersIsLeftAlone(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	// swanmgr dies while adding Eve: the note stays, the load never
	// happened; then someone loads their own "sm-with-eve".
	if err := e.Store.savePending(e.Socket, Pending{Conns: []string{"sm-with-eve"},
		Views: map[string]string{"sm-with-eve": viewOfBody(renderPolicy(t, 6667, true).Conn("sm-with-eve").Body)}}); err != nil {
		t.Fatal(err)
	}
	replaceConn(t, d, "sm-with-eve", "dynamic[udp/53]")

	// Not wanted by the policy: left alone, with a warning.
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, false), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if d.conns["sm-with-eve"] != "replaced by hand" {
		t.Fatal("apply unloaded a foreign connection that had a pending name")
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "sm-with-eve") || !strings.Contains(rep.Warnings[0], "left alone") {
		t.Fatalf("warnings %q", rep.Warnings)
	}
	// Wanted by the policy: a conflict, not a takeover.
	if err := e.Store.savePending(e.Socket, Pending{Conns: []string{"sm-with-eve"},
		Views: map[string]string{"sm-with-eve": viewOfBody(renderPolicy(t, 6667, true).Conn("sm-with-eve").Body)}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("apply of a policy that wants the name: %v; want a conflict", err)
	}
	if d.conns["sm-with-eve"] != "replaced by hand" {
		t.Fatal("apply replaced a foreign connection that had a pending name")
	}
}

// The SAs of a connection replaced under swanmgr go before swanmgr's
// connection is loaded again: loaded first, its start action put its
// CHILD_SAs into the old IKE_SA when charon found that it fitted, and the
// teardown after the load took them down with it, leaving nothing up
// (TestApplyRepairsAConnectionReplacedUnderIt, e2e).
func TestReplacedConnectionsSAsGoBeforeTheLoad(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	replaceConn(t, d, "sm-with-bob", "dynamic[tcp/22]")
	d.sas = []LiveSA{{Conn: "sm-with-bob", UniqueID: 7, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 8}}}}
	d.calls = nil
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	term, load := slices.Index(d.calls, "terminate ike-id 7"), slices.Index(d.calls, "load-conn sm-with-bob")
	if term < 0 || load < 0 || term > load || len(rep.Terminated) != 1 {
		t.Fatalf("calls %q, terminated %+v; want IKE_SA #7 terminated once, before the load", d.calls, rep.Terminated)
	}
}

// A load charon rejects after the SAs of a replaced connection were taken
// down rolls back, and says that those SAs went (they cannot be put
// back), instead of "nothing was changed".
func TestRejectedAfterDroppingReplacedSAsSaysSo(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	replaceConn(t, d, "sm-with-bob", "dynamic[tcp/22]")
	d.sas = []LiveSA{{Conn: "sm-with-bob", UniqueID: 7, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 8}}}}
	d.rejectC = map[string]bool{"sm-with-eve": true}
	_, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) || len(re.Dropped) != 1 || !strings.Contains(err.Error(), "sm-with-bob #7") || strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("apply: %v; want a rejection that names the IKE_SA taken down", err)
	}
}
