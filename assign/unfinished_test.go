package assign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// renderKeys renders the two-rule policy with the given preshared keys
// for bob and eve.
func renderKeys(t *testing.T, bobKey, eveKey string) *render.Result {
	t.Helper()
	p := strings.Replace(fmt.Sprintf(policyTmpl, 6667, eveRule), "a-long-lab-only-key-for-bob", bobKey, 1)
	p = strings.Replace(p, "a-long-lab-only-key-for-eve", eveKey, 1)
	return renderText(t, p)
}

// checkSecrets fails unless charon holds desired's value for every secret.
func checkSecrets(t *testing.T, d *fakeDaemon, desired *render.Result) {
	t.Helper()
	for _, s := range desired.Secrets {
		if string(d.shared[s.Name]) != s.Data.Reveal() {
			t.Errorf("charon holds %q for %s, the policy just applied says %q", d.shared[s.Name], s.Name, s.Data.Reveal())
		}
	}
}

// A secret charon had is given its new value in place and a rollback
// cannot give the old one back: whether the apply was refused later on,
// got no answer for it, or was killed right after it, applying the
// previous policy again must send the old value again, although the
// record still has the old value's fingerprint (before, it kept the
// secret as unchanged and reported success with charon holding the new
// one).
func TestReplacedSecretIsLoadedAgainAfterUnfinishedApply(t *testing.T) {
	const (
		bob = "ike-sm-with-bob"
		eve = "ike-sm-with-eve"
	)
	oldKeys := func(t *testing.T) *render.Result {
		return renderKeys(t, "bob-key-one-long-enough-xx", "eve-key-one-long-enough-xx")
	}
	newKeys := func(t *testing.T) *render.Result {
		return renderKeys(t, "bob-key-two-long-enough-xx", "eve-key-two-long-enough-xx")
	}
	for _, tc := range []struct {
		name string
		fail func(d *fakeDaemon)
	}{
		{"a later secret refused", func(d *fakeDaemon) { d.failShared = map[string]error{eve: errors.New("interrupted")} }},
		{"no answer", func(d *fakeDaemon) { d.lostShared = map[string]bool{bob: true} }},
		{"killed after the replace", func(d *fakeDaemon) {
			d.afterLoadShared = func(id string) {
				if id == bob {
					panic("killed")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := newFake()
			e := newEngine(t, d)
			if _, err := e.Apply(ctx, oldKeys(t), Inputs{}); err != nil {
				t.Fatal(err)
			}
			tc.fail(d)
			func() {
				defer func() { recover() }()
				if _, err := e.Apply(ctx, newKeys(t), Inputs{}); err == nil {
					t.Fatal("the apply that failed half-way succeeded")
				}
			}()
			d.failShared, d.lostShared, d.afterLoadShared = nil, nil, nil
			if string(d.shared[bob]) != "bob-key-two-long-enough-xx" {
				t.Fatalf("the test needs charon to hold bob's new key after the failed apply: %q", d.shared[bob])
			}
			d.calls = nil
			if _, err := e.Apply(ctx, oldKeys(t), Inputs{}); err != nil {
				t.Fatal(err)
			}
			checkSecrets(t, d, oldKeys(t))
			// Once put right, the secret is kept again.
			d.calls = nil
			if _, err := e.Apply(ctx, oldKeys(t), Inputs{}); err != nil {
				t.Fatal(err)
			}
			if n := d.count("load-shared"); n != 0 {
				t.Errorf("the apply after the repair sent %d secrets again: %q", n, d.calls)
			}
		})
	}
}

// What would not unload stays in the record "so that the next apply
// tries again": the next Assign of the same, unchanged policy must not
// take the shortcut then (before, it did, and the removed rule's
// connection and secret stayed loaded for good).
func TestLeftoversDefeatShortcut(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	in1 := Inputs{PolicyFile: "p.toml", Policy: []byte("policy v1")}
	in2 := Inputs{PolicyFile: "p.toml", Policy: []byte("policy v2")}
	v1 := func() (*render.Result, Inputs, error) { return renderPolicy(t, 6667, true), in1, nil }
	v2 := func() (*render.Result, Inputs, error) { return renderPolicy(t, 6667, false), in2, nil }
	if _, _, err := e.Assign(ctx, in1, "kernel", v1); err != nil {
		t.Fatal(err)
	}
	d.refuseUn["sm-with-eve"] = true
	d.failShared = map[string]error{"ike-sm-with-eve": errors.New("busy")}
	rep, _, err := e.Assign(ctx, in2, "kernel", v2)
	if err != nil || len(warningsOf(rep)) != 2 {
		t.Fatalf("apply v2 with unloads refused: %v, warnings %q", err, warningsOf(rep))
	}
	d.refuseUn, d.failShared = map[string]bool{}, nil
	rep, same, err := e.Assign(ctx, in2, "kernel", v2)
	if err != nil || same != nil || rep == nil {
		t.Fatalf("apply v2 again: rep %v, same %v, err %v; want a full apply", rep, same, err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Error("the removed rule's connection is still loaded")
	}
	if _, ok := d.shared["ike-sm-with-eve"]; ok {
		t.Error("the removed rule's secret is still loaded")
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil || len(rec.Leftovers) != 0 || rec.Conn("sm-with-eve") != nil || rec.hasSecret("ike-sm-with-eve") {
		t.Fatalf("the record still lists leftovers: %+v, %v", rec, err)
	}
	// Nothing left over: the shortcut again.
	if _, same, err := e.Assign(ctx, in2, "kernel", v2); err != nil || same == nil {
		t.Fatalf("apply v2 a third time: same %v, err %v; want the shortcut", same, err)
	}
}

// An apply interrupted (Ctrl-C, --timeout) once the new policy is loaded
// still unloads what the policy no longer has (before, every unload failed
// on the cancelled context and the apply reported success with warnings).
func TestInterruptedAfterLoadingStillUnloads(t *testing.T) {
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(context.Background(), renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.onUnloadConn = func(string) { cancel() }
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, false), Inputs{})
	if err != nil || len(warningsOf(rep)) != 0 {
		t.Fatalf("apply interrupted after loading: %v, warnings %q", err, warningsOf(rep))
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Error("the removed rule's connection is still loaded")
	}
	if rec, _ := e.Store.Load(e.Socket); rec.Conn("sm-with-eve") != nil {
		t.Error("the record still lists the removed rule's connection")
	}
}

// renderEndpoint is renderPolicy with another local address: every
// connection's IKE settings change.
func renderEndpoint(t *testing.T, addr string) *render.Result {
	t.Helper()
	p := strings.Replace(fmt.Sprintf(policyTmpl, 6667, ""), "172.16.98.231", addr, 1)
	return renderText(t, p)
}

// renderAbczzOnly is renderTwoRules without the Syslog rule: the shared
// connection loses a child.
func renderAbczzOnly(t *testing.T) *render.Result {
	t.Helper()
	p := fmt.Sprintf(twoRulesTmpl, 514)
	p = p[:strings.Index(p, "  [[policy.rule]]\n  name = \"Syslog\"")]
	return renderText(t, p)
}

// A TeardownError says "apply again": the next apply of the same policy
// must then tear down what stayed up with the old settings, and only that
// (before, it saw the connection unchanged and tore nothing down).
func TestTeardownFailureIsRetriedByNextApply(t *testing.T) {
	bobSA := func() []LiveSA {
		return []LiveSA{{Conn: "sm-with-bob", UniqueID: 1, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 2}}}}
	}
	for _, tc := range []struct {
		name          string
		first, second *render.Result
		sas           []LiveSA
		fail          uint64
		want          string // the terminate the next apply sends
		gone          func(sas []LiveSA) bool
	}{
		{"changed child", renderPolicy(t, 6667, true), renderPolicy(t, 6668, true), bobSA(), 2, "terminate child-id 2",
			func(sas []LiveSA) bool { return len(sas) == 1 && len(sas[0].Children) == 0 }},
		{"changed IKE settings", renderPolicy(t, 6667, false), renderEndpoint(t, "172.16.98.232"), bobSA(), 1, "terminate ike-id 1",
			func(sas []LiveSA) bool { return len(sas) == 0 }},
		{"removed child", renderTwoRules(t, 514), renderAbczzOnly(t),
			[]LiveSA{{Conn: "sm-abczz", UniqueID: 1, Children: []LiveChild{{Name: "sm-abczz-1", UniqueID: 2}, {Name: "sm-syslog-1", UniqueID: 3}}}}, 3, "terminate child-id 3",
			func(sas []LiveSA) bool {
				return len(sas) == 1 && len(sas[0].Children) == 1 && sas[0].Children[0].UniqueID == 2
			}},
		{"removed rule", renderPolicy(t, 6667, true), renderPolicy(t, 6667, false),
			[]LiveSA{{Conn: "sm-with-eve", UniqueID: 5, Children: []LiveChild{{Name: "sm-with-eve-1", UniqueID: 6}}}}, 5, "terminate ike-id 5",
			func(sas []LiveSA) bool { return len(sas) == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := newFake()
			e := newEngine(t, d)
			in1 := Inputs{PolicyFile: "p.toml", Policy: []byte("policy v1")}
			in2 := Inputs{PolicyFile: "p.toml", Policy: []byte("policy v2")}
			if _, _, err := e.Assign(ctx, in1, "kernel", func() (*render.Result, Inputs, error) { return tc.first, in1, nil }); err != nil {
				t.Fatal(err)
			}
			d.sas = tc.sas
			d.failTerm = map[uint64]error{tc.fail: errors.New("timeout")}
			second := func() (*render.Result, Inputs, error) { return tc.second, in2, nil }
			_, _, err := e.Assign(ctx, in2, "kernel", second)
			var te *TeardownError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "apply again") {
				t.Fatalf("apply with a terminate failing: %v", err)
			}
			d.failTerm = nil
			d.calls = nil
			if _, same, err := e.Assign(ctx, in2, "kernel", second); err != nil || same != nil {
				t.Fatalf("apply again: same %v, err %v; want a full apply", same, err)
			}
			if !tc.gone(d.sas) {
				t.Errorf("apply again left %v up (calls %q)", d.sas, d.calls)
			}
			var terms []string
			for _, c := range d.calls {
				if strings.HasPrefix(c, "terminate ") {
					terms = append(terms, c)
				}
			}
			if len(terms) != 1 || terms[0] != tc.want {
				t.Errorf("apply again sent %q, want only %q", terms, tc.want)
			}
			// Done: the next one takes the shortcut again.
			if _, same, err := e.Assign(ctx, in2, "kernel", second); err != nil || same == nil {
				t.Fatalf("third apply: same %v, err %v; want the shortcut", same, err)
			}
		})
	}
}

// renderPorts is the two-rule policy with bob's and eve's ports.
func renderPorts(t *testing.T, bobPort, evePort int) *render.Result {
	t.Helper()
	p := strings.Replace(fmt.Sprintf(policyTmpl, bobPort, eveRule), "destination_port = 514", fmt.Sprintf("destination_port = %d", evePort), 1)
	return renderText(t, p)
}

// leaveEvePending applies bob alone, then an apply adding eve whose answer
// is lost while charon does not show eve yet (so the name stays pending),
// then shows eve.
func leaveEvePending(t *testing.T, e *Engine, d *fakeDaemon) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.lostAnswer = map[string]bool{"sm-with-eve": true}
	hide := true
	d.hideConn = func(name string) bool { return hide && name == "sm-with-eve" }
	if _, err := e.Apply(ctx, renderPorts(t, 6667, 514), Inputs{}); err == nil {
		t.Fatal("the apply whose answer was lost succeeded")
	}
	hide = false
	d.lostAnswer = nil
	if rec, _ := e.Store.Load(e.Socket); !rec.pendingConn("sm-with-eve") {
		t.Fatal("the test needs sm-with-eve pending")
	}
}

// Every apply that does not finish notes the names still pending from the
// one before: each once (before, a name noted twice became two removals,
// the second failing with "not found", and a bogus record entry).
func TestPendingNamesAreNotRepeated(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	leaveEvePending(t, e, d)
	// Another apply that is refused: eve is noted again.
	d.rejectC["sm-with-bob"] = true
	if _, err := e.Apply(ctx, renderPorts(t, 6668, 514), Inputs{}); err == nil {
		t.Fatal("the refused apply succeeded")
	}
	d.rejectC = map[string]bool{}
	rec, err := e.Store.Load(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range [][]string{rec.Pending.Conns, rec.Pending.Secrets} {
		if len(set(names)) != len(names) {
			t.Errorf("the pending note repeats names: %+v", rec.Pending)
		}
	}
	rep, err := e.Apply(ctx, renderPolicy(t, 6668, false), Inputs{})
	if err != nil || len(warningsOf(rep)) != 0 {
		t.Fatalf("apply without eve: %v, warnings %q", err, warningsOf(rep))
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Error("sm-with-eve is still loaded")
	}
	if rec, _ := e.Store.Load(e.Socket); rec.Conn("sm-with-eve") != nil || len(rec.Leftovers) != 0 {
		t.Errorf("the record lists %+v, leftovers %q", rec.Conn("sm-with-eve"), rec.Leftovers)
	}
}

// A note written by an earlier swanmgr, with names repeated, reads as each
// name once.
func TestPendingNoteWithRepeatsReads(t *testing.T) {
	e := newEngine(t, newFake())
	if err := e.Store.savePending(e.Socket, Pending{Conns: []string{"a", "b", "a"}, Secrets: []string{"s", "s"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.Pending.Conns, ",") + ";" + strings.Join(rec.Pending.Secrets, ","); got != "a,b;s" {
		t.Errorf("pending read as %q, want a,b;s", got)
	}
}

// withKey is renderPolicy (bob alone) with a private key.
func withKey(t *testing.T) *render.Result {
	res := renderPolicy(t, 6667, false)
	res.Keys = []render.Key{{Name: "private-x", Path: "/k", Data: model.NewSecret("KEYDATA1")}}
	return res
}

// killedWhileLoadingConns applies desired and kills swanmgr at its first
// load-conn, after the private keys loaded and before the record.
func killedWhileLoadingConns(t *testing.T, e *Engine, d *fakeDaemon, desired *render.Result) {
	t.Helper()
	d.onLoadConn = func(string) { panic("killed") }
	func() {
		defer func() { recover() }()
		e.Apply(context.Background(), desired, Inputs{})
		t.Fatal("the apply was not killed")
	}()
	d.onLoadConn = nil
	if len(d.keys) != 1 {
		t.Fatalf("the test needs the key loaded: %v", d.keys)
	}
}

// A private key charon did not have is noted as swanmgr's right after it
// loads: a swanmgr killed before the record still owns it, so that the next
// apply takes it over (or unloads it when no longer wanted) and unassign
// unloads it (before, it was treated as someone else's for good).
func TestKeyOfUnfinishedApplyIsOwned(t *testing.T) {
	ctx := context.Background()
	const id = "8KEYD" // the fake's id for KEYDATA1
	t.Run("unassign", func(t *testing.T) {
		d := newFake()
		e := newEngine(t, d)
		killedWhileLoadingConns(t, e, d, withKey(t))
		if _, err := e.Unassign(ctx); err != nil {
			t.Fatal(err)
		}
		if len(d.keys) != 0 {
			t.Errorf("unassign left the key: %v", d.keys)
		}
	})
	t.Run("apply takes it over", func(t *testing.T) {
		d := newFake()
		e := newEngine(t, d)
		killedWhileLoadingConns(t, e, d, withKey(t))
		if _, err := e.Apply(ctx, withKey(t), Inputs{}); err != nil {
			t.Fatal(err)
		}
		if rec, _ := e.Store.Load(e.Socket); strings.Join(rec.Keys, ",") != id || !rec.Pending.empty() {
			t.Fatalf("record keys %v, pending %+v; want the key recorded", rec.Keys, rec.Pending)
		}
		if _, err := e.Unassign(ctx); err != nil || len(d.keys) != 0 {
			t.Errorf("unassign: %v, keys left %v", err, d.keys)
		}
	})
	t.Run("apply without it unloads it", func(t *testing.T) {
		d := newFake()
		e := newEngine(t, d)
		killedWhileLoadingConns(t, e, d, withKey(t))
		rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
		if err != nil || len(warningsOf(rep)) != 0 {
			t.Fatalf("apply: %v, warnings %q", err, warningsOf(rep))
		}
		if len(d.keys) != 0 {
			t.Errorf("the key is still loaded: %v", d.keys)
		}
		if rec, _ := e.Store.Load(e.Socket); len(rec.Keys) != 0 {
			t.Errorf("record keys %v", rec.Keys)
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		// The rollback unloads the key; the note, kept for a name still
		// pending, no longer lists it, so unassign does not fail on it.
		d := newFake()
		e := newEngine(t, d)
		leaveEvePending(t, e, d)
		d.rejectC["sm-with-bob"] = true
		res := renderPorts(t, 6668, 514)
		res.Keys = withKey(t).Keys
		if _, err := e.Apply(ctx, res, Inputs{}); err == nil {
			t.Fatal("the refused apply succeeded")
		}
		d.rejectC = map[string]bool{}
		if len(d.keys) != 0 {
			t.Fatalf("the rollback left the key: %v", d.keys)
		}
		if rec, _ := e.Store.Load(e.Socket); len(rec.Keys) != 0 || len(rec.Pending.Keys) != 0 {
			t.Fatalf("record keys %v, pending %+v", rec.Keys, rec.Pending)
		}
		if _, err := e.Unassign(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// A pending note written before it listed keys still reads.
func TestPendingNoteWithoutKeysReads(t *testing.T) {
	e := newEngine(t, newFake())
	if err := e.Store.ensureDir(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Store.path(e.Socket, ".pending.json"), []byte(`{"conns":["a"],"secrets":["s"],"views":{"a":"v"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil || rec == nil || !rec.pendingConn("a") || !rec.pendingSecret("s") || len(rec.Keys) != 0 {
		t.Fatalf("read %+v, %v", rec, err)
	}
}

// A pending name keeps every view swanmgr sent under it: an apply that
// notes it with new settings and then stops before loading it (refused
// earlier, or killed) leaves charon holding what the earlier apply sent,
// which is still swanmgr's (before, the note's view was overwritten, and
// the next apply called swanmgr's own connection a conflict, or left it
// loaded and unowned).
func TestPendingNameKeepsEarlierViews(t *testing.T) {
	ctx := context.Background()
	for _, stop := range []struct {
		name string
		how  func(d *fakeDaemon)
	}{
		{"refused", func(d *fakeDaemon) { d.rejectC["sm-with-bob"] = true }},
		{"killed", func(d *fakeDaemon) { d.onLoadConn = func(string) { panic("killed") } }},
	} {
		for _, next := range []struct {
			name    string
			desired func(t *testing.T) *render.Result
			eve     bool // whether charon should have eve afterwards
		}{
			{"same policy again", func(t *testing.T) *render.Result { return renderPorts(t, 6668, 515) }, true},
			{"policy without eve", func(t *testing.T) *render.Result { return renderPolicy(t, 6668, false) }, false},
		} {
			t.Run(stop.name+", then "+next.name, func(t *testing.T) {
				d := newFake()
				e := newEngine(t, d)
				leaveEvePending(t, e, d) // charon holds eve on port 514
				stop.how(d)
				func() {
					defer func() { recover() }()
					if _, err := e.Apply(ctx, renderPorts(t, 6668, 515), Inputs{}); err == nil {
						t.Fatal("the apply that stops succeeded")
					}
				}()
				d.rejectC, d.onLoadConn = map[string]bool{}, nil
				rep, err := e.Apply(ctx, next.desired(t), Inputs{})
				if err != nil {
					t.Fatalf("next apply: %v", err)
				}
				if len(warningsOf(rep)) != 0 {
					t.Errorf("next apply warns %q", warningsOf(rep))
				}
				if _, ok := d.conns["sm-with-eve"]; ok != next.eve {
					t.Errorf("charon has sm-with-eve: %v, want %v", ok, next.eve)
				}
				if rec, _ := e.Store.Load(e.Socket); (rec.Conn("sm-with-eve") != nil) != next.eve || !rec.Pending.empty() {
					t.Errorf("record has sm-with-eve: %v, pending %+v", rec.Conn("sm-with-eve") != nil, rec.Pending)
				}
			})
		}
	}
}

// warningsOf is rep's warnings; none when there is no report.
func warningsOf(rep *Report) []string {
	if rep == nil {
		return nil
	}
	return rep.Warnings
}
