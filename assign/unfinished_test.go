package assign

import (
	"context"
	"errors"
	"fmt"
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
	f, err := model.Parse("p.toml", []byte(p))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(a, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
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
	if err != nil || len(rep.Warnings) != 2 {
		t.Fatalf("apply v2 with unloads refused: %v, warnings %q", err, rep.Warnings)
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
	if err != nil || len(rep.Warnings) != 0 {
		t.Fatalf("apply interrupted after loading: %v, warnings %q", err, rep.Warnings)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Error("the removed rule's connection is still loaded")
	}
	if rec, _ := e.Store.Load(e.Socket); rec.Conn("sm-with-eve") != nil {
		t.Error("the record still lists the removed rule's connection")
	}
}
