package assign

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// shortcutSetup applies a policy through Assign with a key file as one of
// its inputs, and returns a prepare that counts its calls.
func shortcutSetup(t *testing.T) (*Engine, *fakeDaemon, Inputs, string, func() (*render.Result, Inputs, error), *int) {
	t.Helper()
	d := newFake()
	e := newEngine(t, d)
	keyFile := filepath.Join(t.TempDir(), "k.psk")
	if err := os.WriteFile(keyFile, []byte("a-long-lab-only-key-for-bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := Inputs{PolicyFile: "p.toml", Policy: []byte("policy v1"),
		Read: []model.Input{{Kind: "file", Name: keyFile, Data: model.NewSecret("a-long-lab-only-key-for-bob\n")}}}
	calls := 0
	prepare := func() (*render.Result, Inputs, error) {
		calls++
		return renderPolicy(t, 6667, false), in, nil
	}
	if _, same, err := e.Assign(context.Background(), in, "kernel", prepare); err != nil || same != nil || calls != 1 {
		t.Fatalf("first Assign: same %v, err %v, prepare called %d times", same, err, calls)
	}
	return e, d, in, keyFile, prepare, &calls
}

// Unchanged inputs and charon still holding everything: nothing is
// parsed, nothing sent.
func TestAssignShortcut(t *testing.T) {
	e, d, in, _, prepare, calls := shortcutSetup(t)
	d.calls = nil
	rep, same, err := e.Assign(context.Background(), in, "kernel", prepare)
	if err != nil || same == nil || rep != nil || *calls != 1 {
		t.Fatalf("unchanged: rep %v same %v err %v, prepare called %d times; want the shortcut", rep, same, err, *calls)
	}
	if len(d.calls) != 0 {
		t.Fatalf("the shortcut sent %q", d.calls)
	}
}

// Each thing the shortcut depends on, changed, makes Assign validate and
// apply again.
func TestAssignShortcutNotTaken(t *testing.T) {
	for name, change := range map[string]func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string{
		"policy edited": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			in.Policy = []byte("policy v2")
			return "kernel"
		},
		"key file changed": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			os.WriteFile(keyFile, []byte("another-long-lab-only-key\n"), 0o600)
			return "kernel"
		},
		"key file became group-readable": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			os.Chmod(keyFile, 0o640)
			return "kernel"
		},
		"key file in a world-writable folder": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			os.Chmod(filepath.Dir(keyFile), 0o777)
			return "kernel"
		},
		"backend": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			return "libipsec"
		},
		"charon's copy replaced": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			// swanctl --load-conns of a file with swanmgr's name: plan
			// showed the drift and an unchanged apply said "unchanged".
			replaceConn(t, d, "sm-with-bob", "dynamic[tcp/22]")
			return "kernel"
		},
		"charon lost a connection": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			delete(d.conns, "sm-with-bob")
			return "kernel"
		},
		"charon lost a secret": func(t *testing.T, e *Engine, d *fakeDaemon, in *Inputs, keyFile string) string {
			delete(d.shared, "ike-sm-with-bob")
			return "kernel"
		},
	} {
		t.Run(name, func(t *testing.T) {
			e, d, in, keyFile, prepare, calls := shortcutSetup(t)
			backend := change(t, e, d, &in, keyFile)
			_, same, err := e.Assign(context.Background(), in, backend, prepare)
			if err != nil || same != nil || *calls != 2 {
				t.Fatalf("same %v err %v, prepare called %d times; want it validated and applied again", same, err, *calls)
			}
		})
	}
}

// A secret that will not unload stays in the record with a warning; one
// that will not load rolls the apply back.
func TestSecretFailures(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.failShared = map[string]error{"ike-sm-with-eve": errors.New("charon: busy")}
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "unloading secret ike-sm-with-eve") {
		t.Fatalf("warnings %q", rep.Warnings)
	}
	rec, _ := e.Store.Load(e.Socket)
	if !rec.hasSecret("ike-sm-with-eve") {
		t.Fatal("a secret that would not unload was dropped from the record")
	}
	d.failShared = nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.shared["ike-sm-with-eve"]; ok {
		t.Fatal("the next apply did not unload the stale secret")
	}

	d.failShared = map[string]error{"ike-sm-with-eve": &vici.CommandError{Command: "load-shared", Name: "ike-sm-with-eve", Message: "invalid owners"}}
	_, err = e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) || !re.Restored || !strings.Contains(err.Error(), "secret ike-sm-with-eve") {
		t.Fatalf("a secret charon refuses: %v", err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("the connection of a refused secret was loaded")
	}
}

// Above CompareAllUpTo connections charon's copies are found by name only
// (listing thousands of connections costs most of a one-rule change), and
// plan and apply agree on it: neither sees a replaced copy, and the plan
// counts what it did not compare. Refresh compares every copy in both.
func TestOverTheLimitCopiesAreComparedOnlyWithRefresh(t *testing.T) {
	defer func(n int) { compareLimit = n }(compareLimit)
	compareLimit = 0
	ctx := context.Background()
	e, d, in, _, prepare, calls := shortcutSetup(t)
	replaceConn(t, d, "sm-with-bob", "dynamic[tcp/22]")
	p, err := e.Plan(ctx, renderPolicy(t, 6667, false))
	if err != nil || p.Pending() || p.Unverified != 1 {
		t.Fatalf("plan over the limit: pending %v, unverified %d, %v; want no change and 1 not compared", p.Pending(), p.Unverified, err)
	}
	if _, same, err := e.Assign(ctx, in, "kernel", prepare); err != nil || same == nil || *calls != 1 {
		t.Fatalf("apply over the limit: same %v, %v, prepare called %d times; want the shortcut", same, err, *calls)
	}
	e.Refresh = true
	p, err = e.Plan(ctx, renderPolicy(t, 6667, false))
	if err != nil || !p.Pending() || len(p.Rules) != 1 || !p.Rules[0].Drift || p.Unverified != 0 {
		t.Fatalf("plan --refresh: pending %v, rules %+v, unverified %d, %v; want the drift", p.Pending(), p.Rules, p.Unverified, err)
	}
	d.calls = nil
	if rep, same, err := e.Assign(ctx, in, "kernel", prepare); err != nil || same != nil || rep == nil || d.count("load-conn") != 1 {
		t.Fatalf("apply --refresh: rep %v, same %v, %v, calls %q; want swanmgr's connection loaded again", rep, same, err, d.calls)
	}
}

// With PrepareEarly, an edited policy file is read (prepare) before the
// record is, under the lock, and the apply is the one prepare gives; an
// unchanged one is not read at all; and the look at the record's end
// tells the two apart.
func TestPrepareEarly(t *testing.T) {
	ctx := context.Background()
	e, d, in, _, prepare, calls := shortcutSetup(t)
	e.PrepareEarly = true
	if e.Store.policyChangedHint(e.Socket, in) {
		t.Fatal("the hint says the assigned policy changed")
	}
	rep, same, err := e.Assign(ctx, in, "kernel", prepare)
	if err != nil || same == nil || rep != nil || *calls != 1 {
		t.Fatalf("unchanged: rep %v same %v err %v, prepare called %d times; want the shortcut, nothing read", rep, same, err, *calls)
	}
	if e.Prepared() {
		t.Error("the shortcut says it used prepare's result")
	}

	edited := in
	edited.Policy = []byte("policy v2")
	if !e.Store.policyChangedHint(e.Socket, edited) {
		t.Fatal("the hint misses an edited policy")
	}
	// prepare runs under the lock.
	recordPath := e.Store.path(e.Socket, ".json")
	var lockedDuring, rendered bool
	early := func() (*render.Result, Inputs, error) {
		lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, lerr := e.Store.Lock(lctx, e.Socket)
		lockedDuring = lerr != nil
		if _, err := os.Stat(recordPath); err != nil {
			t.Error(err)
		}
		rendered = true
		return renderPolicy(t, 6668, false), edited, nil
	}
	d.calls = nil
	rep, same, err = e.Assign(ctx, edited, "kernel", early)
	if err != nil || same != nil || rep == nil || !rendered {
		t.Fatalf("edited: rep %v same %v err %v, prepared %v; want an apply", rep, same, err, rendered)
	}
	if !lockedDuring {
		t.Error("prepare ran without the lock held")
	}
	if !e.Prepared() {
		t.Error("an apply of what prepare read does not say it used it")
	}
	if d.count("load-conn") != 1 {
		t.Errorf("edited: sent %q; want the changed connection loaded", d.calls)
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil || !strings.Contains(string(mustRead(t, recordPath)), keyedFingerprint(e.Store.existingFingerprintKey(), "policy", mustAbs(t, edited.PolicyFile), edited.Policy)) || rec == nil {
		t.Fatalf("the record of the edited policy: %v", err)
	}
	if e.Store.policyChangedHint(e.Socket, edited) {
		t.Error("after its apply, the hint still says the policy changed")
	}

	// A prepare that fails: the error, and nothing sent.
	bad := in
	bad.Policy = []byte("policy v3")
	d.calls = nil
	_, _, err = e.Assign(ctx, bad, "kernel", func() (*render.Result, Inputs, error) {
		return nil, bad, errors.New("invalid policy")
	})
	if err == nil || err.Error() != "invalid policy" || len(d.calls) != 0 {
		t.Fatalf("failing prepare: %v, sent %q", err, d.calls)
	}

	// A precondition that fails after the early prepare began: the
	// prepare's result is not used, and Prepared says so.
	other := in
	other.Policy = []byte("policy v4")
	ran := false
	e.Precondition = func() error { return errors.New("a confirmation is pending") }
	d.calls = nil
	_, _, err = e.Assign(ctx, other, "kernel", func() (*render.Result, Inputs, error) {
		ran = true
		return renderPolicy(t, 6669, false), other, nil
	})
	if err == nil || err.Error() != "a confirmation is pending" || len(d.calls) != 0 {
		t.Fatalf("failing precondition: %v, sent %q", err, d.calls)
	}
	if !ran {
		t.Error("the early prepare did not run (the test no longer tests what it says)")
	}
	if e.Prepared() {
		t.Error("an Assign that stopped at its precondition says it used prepare's result")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
