package assign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A removed rule whose connection charon already lost (a stray swanctl
// --load-all) still has its SA torn down, as plan says: one function
// computes the targets for both.
func TestTeardownOfRemovedRuleWithoutConnection(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	delete(d.conns, "sm-with-eve")
	d.sas = []LiveSA{{Conn: "sm-with-eve", UniqueID: 9, Children: []LiveChild{{Name: "sm-with-eve-1", UniqueID: 10}}}}
	p, err := e.Plan(ctx, renderPolicy(t, 6667, false))
	if err != nil {
		t.Fatal(err)
	}
	planned := plannedTeardowns(p)
	if len(planned) != 1 || planned[0] != 9 {
		t.Fatalf("plan tears down %v, want IKE_SA #9", planned)
	}
	d.calls = nil
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(d.calls, "|"), "terminate ike-id 9") || len(rep.Terminated) != 1 {
		t.Fatalf("apply sent %q and reports %v torn down; want IKE_SA #9, as plan said", d.calls, rep.Terminated)
	}
}

// A terminate that fails is reported, and the apply says the changed rule
// is not in force; an apply interrupted after loading still tears down.
func TestTeardownFailuresAreReported(t *testing.T) {
	ctx := context.Background()
	d, e := withTwoSAs(t)
	d.failTerm = map[uint64]error{2: errors.New("charon: no such CHILD_SA")}
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	var te *TeardownError
	if !errors.As(err, &te) || len(te.Failed) != 1 || !strings.Contains(err.Error(), `rule "With Bob"`) || !strings.Contains(err.Error(), "CHILD_SA sm-with-bob-1 #2") {
		t.Fatalf("apply with a failing terminate: %v", err)
	}
	if rep == nil || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "no such CHILD_SA") {
		t.Fatalf("warnings: %+v", rep)
	}
	// The policy is in place all the same: the record has the new port.
	rec, _ := e.Store.Load(e.Socket)
	if rec == nil || rec.Conn("sm-with-bob") == nil {
		t.Fatal("record lost after a teardown failure")
	}

	// Interrupted once the new policy is in (while unloading what it no
	// longer has): the teardown still runs.
	d.failTerm = nil
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.onUnloadConn = func(string) { cancel() }
	d.sas = []LiveSA{{Conn: "sm-with-eve", UniqueID: 5, Children: []LiveChild{{Name: "sm-with-eve-1", UniqueID: 6}}}}
	d.calls = nil
	rep, err = e.Apply(cctx, renderPolicy(t, 6668, false), Inputs{})
	if len(d.sas) != 0 || rep == nil || len(rep.Terminated) != 1 {
		t.Errorf("after a cancelled context: SAs %v left, report %+v, err %v; want the removed rule's SA terminated", d.sas, rep, err)
	}
}

// A CHILD_SA charon closed on its own before its terminate arrived counts
// as torn down, even when its number is also the number of a live IKE_SA
// (the two are counted apart: charon's IKE_SA #4 may carry CHILD_SA #4's
// successor). Before, the IKE_SA's number made the child look alive and
// the apply failed (CI, TestConfirmWithAgent).
func TestTeardownOfVanishedChildSharingIKENumber(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.sas = []LiveSA{{Conn: "sm-with-bob", UniqueID: 4, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 4}}}}
	d.vanish = map[uint64]bool{4: true}
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	if err != nil {
		t.Fatalf("apply after charon closed the child itself: %v", err)
	}
	if len(rep.Terminated) != 1 || len(rep.Warnings) != 0 {
		t.Fatalf("report: terminated %v, warnings %q; want the child counted torn down, no warning", rep.Terminated, rep.Warnings)
	}
}

// A one-rule change asks charon for the SAs of the changed rule's child
// only (list-sas with ike and child), as plan does: at a gateway of
// thousands of SAs a listing of all of them costs charon seconds, of one
// IKE_SA of 500 CHILD_SAs 0.9 s. The changed rule's SA is torn down, the
// other rule's stays.
func TestOneRuleChangeListsItsOwnSAs(t *testing.T) {
	ctx := context.Background()
	d, e := withTwoSAs(t)
	d.saQueries = nil
	p, err := e.Plan(ctx, renderPolicy(t, 6668, true))
	if err != nil {
		t.Fatal(err)
	}
	planned := plannedTeardowns(p)
	// The port is a child's setting: that child's SAs are what is asked.
	want := [][]SAQuery{{{Conn: "sm-with-bob", Child: "sm-with-bob-1"}}}
	if fmt.Sprint(d.saQueries) != fmt.Sprint(want) || fmt.Sprint(planned) != "[1]" {
		t.Fatalf("plan asked for the SAs of %q and tears down %v; want %q and IKE_SA #1", d.saQueries, planned, want)
	}
	d.saQueries = nil
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.saQueries) != fmt.Sprint(want) {
		t.Errorf("apply asked for the SAs of %q; want %q", d.saQueries, want)
	}
	eve := 0
	for _, sa := range d.sas {
		if sa.Conn == "sm-with-eve" {
			eve += len(sa.Children)
		}
	}
	if len(rep.Terminated) != 1 || rep.Terminated[0].Conn != "sm-with-bob" || fmt.Sprint(rep.Terminated[0].Children) != fmt.Sprint([]LiveChild{{Name: "sm-with-bob-1", UniqueID: 2}}) || eve != 1 {
		t.Errorf("torn down %v, left %v; want Bob's CHILD_SA #2 torn down, Eve's left", rep.Terminated, d.sas)
	}
	// Unassign asks for, and tears down, every SA of swanmgr's
	// connections.
	d.saQueries = nil
	rep, err = e.Unassign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if whole := [][]SAQuery{{{Conn: "sm-with-bob"}, {Conn: "sm-with-eve"}}}; fmt.Sprint(d.saQueries) != fmt.Sprint(whole) || len(rep.Terminated) != 2 || len(d.sas) != 0 {
		t.Errorf("unassign asked for %q, tore down %v, left %v; want both connections asked for and both IKE_SAs torn down", d.saQueries, rep.Terminated, d.sas)
	}
}

// withTwoSAs is an engine that applied the two-rule policy, with an
// IKE_SA of one CHILD_SA live for each rule: Bob's #1 (child #2), Eve's
// #3 (child #4).
func withTwoSAs(t *testing.T) (*fakeDaemon, *Engine) {
	t.Helper()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(context.Background(), renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.sas = []LiveSA{
		{Conn: "sm-with-bob", UniqueID: 1, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 2}}},
		{Conn: "sm-with-eve", UniqueID: 3, Children: []LiveChild{{Name: "sm-with-eve-1", UniqueID: 4}}},
	}
	return d, e
}

// plannedTeardowns are the ids of the SAs p's rules would tear down.
func plannedTeardowns(p *Plan) []uint64 {
	var out []uint64
	for _, r := range p.Rules {
		for _, sa := range r.Teardown {
			out = append(out, sa.UniqueID)
		}
	}
	return out
}
