package assign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

const policyTmpl = `
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = %d

[[filter_list]]
name = "Eve"
  [[filter_list.filter]]
  source = "me"
  destination = "172.20.0.5"
  protocol = "udp"
  destination_port = 514

[[filter_action]]
name = "Encrypt"
action = "negotiate"
pfs = true

[[policy]]
name = "P"
  [[policy.rule]]
  name = "With Bob"
  filter_list = "Bob"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret = "a-long-lab-only-key-for-bob" } ]
%s`

const eveRule = `
  [[policy.rule]]
  name = "With Eve"
  filter_list = "Eve"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret = "a-long-lab-only-key-for-eve" } ]
`

// renderText validates and renders a policy text, named p.toml.
func renderText(t *testing.T, text string) *render.Result {
	t.Helper()
	f, err := model.Parse("p.toml", []byte(text))
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

func renderPolicy(t *testing.T, port int, withEve bool) *render.Result {
	t.Helper()
	extra := ""
	if withEve {
		extra = eveRule
	}
	return renderText(t, fmt.Sprintf(policyTmpl, port, extra))
}

func newEngine(t *testing.T, d Daemon) *Engine {
	fw := &fakeFirewall{}
	if fd, ok := d.(*fakeDaemon); ok {
		fw.d = fd
	}
	return &Engine{Daemon: d, Store: Store{Dir: t.TempDir()}, Socket: "/run/test/charon.vici",
		Firewall: func() (Firewall, error) { return fw, nil }}
}

func TestApplyMinimalChange(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	d.conns["hand-made"] = "by hand"
	d.shared["ike-hand"] = []byte("x")
	e := newEngine(t, d)

	rep, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LoadConn != 2 || rep.Plan.Summary()[Added] != 2 {
		t.Fatalf("first apply: %d load-conn, summary %v; want 2 added", rep.LoadConn, rep.Plan.Summary())
	}
	// New secrets go before the connections that start with them.
	if !strings.HasPrefix(d.calls[0], "load-shared ") || !strings.HasPrefix(d.calls[2], "load-conn ") {
		t.Fatalf("first apply sent %q; want the secrets before the connections", d.calls)
	}

	d.calls = nil
	rep, err = e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if n := d.count("load-conn"); n != 0 || rep.Plan.Summary()[Unchanged] != 2 {
		t.Fatalf("unchanged re-apply sent %d load-conn (summary %v), want 0", n, rep.Plan.Summary())
	}

	d.calls = nil
	d.sas = []LiveSA{
		{Conn: "sm-with-bob", UniqueID: 1, Children: []LiveChild{{Name: "sm-with-bob-1", UniqueID: 2}}},
		{Conn: "sm-with-eve", UniqueID: 3, Children: []LiveChild{{Name: "sm-with-eve-1", UniqueID: 4}}},
	}
	rep, err = e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"load-conn sm-with-bob", "terminate child-id 2"}
	if strings.Join(d.calls, "|") != strings.Join(want, "|") {
		t.Fatalf("changing one rule: calls %q, want %q", d.calls, want)
	}
	if s := rep.Plan.Summary(); s[Changed] != 1 || s[Unchanged] != 1 {
		t.Fatalf("summary %v, want 1 changed 1 unchanged", s)
	}

	d.calls = nil
	if _, err := e.Apply(ctx, renderPolicy(t, 6668, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("removed rule's connection still loaded")
	}
	if _, ok := d.shared["ike-sm-with-eve"]; ok {
		t.Fatal("removed rule's secret still loaded")
	}
	if !strings.Contains(strings.Join(d.calls, "|"), "terminate ike-id 3") {
		t.Fatalf("removed rule's IKE_SA not terminated: %q", d.calls)
	}

	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if len(d.conns) != 1 || d.conns["hand-made"] == "" || len(d.shared) != 1 || d.shared["ike-hand"] == nil {
		t.Fatalf("after unassign charon has %v / %v; want only the hand-made ones", d.conns, d.shared)
	}
}

func TestApplyRejectedRestoresPrevious(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	before := d.conns["sm-with-bob"]
	d.rejectC["sm-with-eve"] = true
	_, err := e.Apply(ctx, renderPolicy(t, 6668, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want RejectedError", err)
	}
	if !strings.Contains(err.Error(), `rule "With Eve"`) || !strings.Contains(err.Error(), "config discarded") {
		t.Fatalf("error %q does not name the rule and charon's message", err)
	}
	if d.conns["sm-with-bob"] != before {
		t.Fatal("changed connection was not restored to its previous settings")
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("rejected connection is loaded")
	}
	rec, _ := e.Store.Load(e.Socket)
	if rec == nil || len(rec.Conns) != 1 || rec.Conns[0].Hash != renderPolicy(t, 6667, false).Conns[0].Hash() {
		t.Fatal("record changed by a failed apply")
	}
}

func TestApplyTrustsTheDaemon(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	// charon restarts: it forgets everything.
	d.conns, d.shared, d.calls = map[string]string{}, map[string][]byte{}, nil
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LoadConn != 2 || len(d.conns) != 2 || len(d.shared) != 2 {
		t.Fatalf("after a daemon restart apply loaded %d connections, charon has %d conns %d secrets; want all restored", rep.LoadConn, len(d.conns), len(d.shared))
	}
}

func TestApplyRefusesForeignNames(t *testing.T) {
	d := newFake()
	d.conns["sm-with-bob"] = "loaded by hand"
	e := newEngine(t, d)
	_, err := e.Apply(context.Background(), renderPolicy(t, 6667, false), Inputs{})
	var ce *ConflictError
	if !errors.As(err, &ce) || d.conns["sm-with-bob"] != "loaded by hand" {
		t.Fatalf("err = %v; a connection swanmgr did not load must not be replaced", err)
	}
}

// Thousands of names swanmgr did not load are one readable line: the
// first 20 and how many more (before, every name went into the message:
// 10,000 of them at 5,000 rules with a lost record).
func TestConflictMessageIsBounded(t *testing.T) {
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("sm-peer-%d", i))
	}
	msg := (&ConflictError{Names: names}).Error()
	if !strings.Contains(msg, "did not load: sm-peer-0, sm-peer-1, ") || !strings.Contains(msg, ", sm-peer-19 and 10 more;") || strings.Contains(msg, "sm-peer-20") {
		t.Fatalf("message: %s; want the first 20 names and \"and 10 more\"", msg)
	}
	if one := (&ConflictError{Names: names[:1]}).Error(); !strings.Contains(one, "has connection or secret that swanmgr did not load: sm-peer-0;") {
		t.Fatalf("one name: %s", one)
	}
}

func TestLockSerializes(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	unlock, err := s.Lock(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(ctx, "/x")
		if err == nil {
			u()
		}
		got <- err
	}()
	cancel()
	if err := <-got; err == nil {
		t.Fatal("second lock acquired while the first was held")
	}
	unlock()
	u2, err := s.Lock(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

func TestRecordHasNoSecrets(t *testing.T) {
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(context.Background(), renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(e.Store.Dir)
	for _, en := range entries {
		b, _ := os.ReadFile(filepath.Join(e.Store.Dir, en.Name()))
		if strings.Contains(string(b), "lab-only-key") {
			t.Fatalf("%s holds a secret", en.Name())
		}
		if st, _ := os.Stat(filepath.Join(e.Store.Dir, en.Name())); st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %v", en.Name(), st.Mode())
		}
	}
}

func TestChangedSecretIsSentAlone(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.calls = nil
	res := renderPolicy(t, 6667, true)
	res.Secrets[1].Data = model.NewSecret("a-new-long-lab-only-key-for-eve")
	if _, err := e.Apply(ctx, res, Inputs{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.calls, "|") != "load-shared ike-sm-with-eve" {
		t.Fatalf("a changed key sent %q; want only that secret", d.calls)
	}
	if string(d.shared["ike-sm-with-eve"]) != "a-new-long-lab-only-key-for-eve" {
		t.Fatal("charon does not have the new key")
	}
}

// An apply interrupted (Ctrl-C, --timeout) while loading puts back what it
// loaded although its context is gone, and says it was interrupted.
func TestInterruptedApplyRollsBack(t *testing.T) {
	d := newFake()
	e := newEngine(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.onLoadConn = func(name string) {
		if name == "sm-with-eve" {
			cancel()
		}
	}
	_, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{})
	var re *RejectedError
	if !errors.As(err, &re) || !re.Interrupted || !re.Restored || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v; want an interrupted, restored apply", err)
	}
	if len(d.conns) != 0 || len(d.shared) != 0 {
		t.Fatalf("an interrupted apply left %v / %v behind", d.conns, d.shared)
	}
	// And the next apply is not blocked by leftovers.
	d.onLoadConn = nil
	if _, err := e.Apply(context.Background(), renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
}

// A connection that will not unload stays swanmgr's: the record keeps it
// and the next apply tries again.
func TestFailedUnloadStaysOwned(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	d.refuseUn["sm-with-eve"] = true
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warnings) == 0 {
		t.Fatal("a failed unload gave no warning")
	}
	rec, _ := e.Store.Load(e.Socket)
	if rec.Conn("sm-with-eve") == nil {
		t.Fatal("the record forgot a connection that is still loaded")
	}
	d.refuseUn = map[string]bool{}
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.conns["sm-with-eve"]; ok {
		t.Fatal("the next apply did not unload the leftover")
	}
}

// A private key charon already had (loaded by someone else) is not
// swanmgr's: it is not recorded and never unloaded.
func TestForeignKeyIsNotOwned(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	res := renderPolicy(t, 6667, false)
	res.Keys = []render.Key{{Name: "private-x", Path: "/k", Data: model.NewSecret("KEYDATA1")}}
	d.keys["8KEYD"] = true // the same key, loaded by hand
	if _, err := e.Apply(ctx, res, Inputs{}); err != nil {
		t.Fatal(err)
	}
	if rec, _ := e.Store.Load(e.Socket); len(rec.Keys) != 0 {
		t.Fatalf("recorded %v as swanmgr's", rec.Keys)
	}
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if !d.keys["8KEYD"] {
		t.Fatal("unassign unloaded a key swanmgr did not load")
	}
}

// A swanmgr killed half-way leaves connections and secrets behind that
// its record does not list; the note of what it was about to load makes
// them its own: the next apply takes them over without a conflict, and
// unassign removes them.
func TestUnfinishedApplyIsCleanedUp(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	// What a killed first apply left: one connection, both secrets, and
	// its note; no record.
	d.conns["sm-with-bob"] = "half-loaded"
	d.shared["ike-sm-with-bob"] = []byte("x")
	d.shared["ike-sm-with-eve"] = []byte("x")
	if err := e.Store.savePending(e.Socket, Pending{Conns: []string{"sm-with-bob", "sm-with-eve"}, Secrets: []string{"ike-sm-with-bob", "ike-sm-with-eve"}}); err != nil {
		t.Fatal(err)
	}
	// The next apply no longer wants Eve: it takes Bob over and removes Eve's secret.
	rep, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err != nil {
		t.Fatalf("apply after an unfinished one: %v", err)
	}
	if d.conns["sm-with-bob"] == "half-loaded" || rep.LoadConn != 1 {
		t.Fatal("the half-loaded connection was not loaded again")
	}
	if _, ok := d.shared["ike-sm-with-eve"]; ok {
		t.Fatal("the unfinished apply's secret for Eve is still loaded")
	}
	if _, err := os.Stat(e.Store.path(e.Socket, ".pending.json")); !os.IsNotExist(err) {
		t.Fatal("the note of the unfinished apply is still there")
	}
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if len(d.conns) != 0 || len(d.shared) != 0 {
		t.Fatalf("after unassign charon still has %v / %v", d.conns, d.shared)
	}

	// Unassign alone also cleans up after a killed apply.
	d.conns["sm-with-eve"] = "half-loaded"
	if err := e.Store.savePending(e.Socket, Pending{Conns: []string{"sm-with-eve"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if len(d.conns) != 0 {
		t.Fatalf("unassign left %v", d.conns)
	}
}

// The record of an apply that changed one rule holds, for every
// connection, the view its settings give and, for every secret, its
// fingerprint, though both are taken over from the record before for
// what did not change.
func TestRecordAfterAChangeIsAsIfWhole(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	key, err := e.Store.fingerprintKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{6667, 6668, 6667} {
		desired := renderPolicy(t, port, true)
		if _, err := e.Apply(ctx, desired, Inputs{}); err != nil {
			t.Fatal(err)
		}
		rec, err := e.Store.Load(e.Socket)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.madeByThisProgram() {
			t.Fatal("the record does not say this program made it")
		}
		if len(rec.Conns) != len(desired.Conns) || len(rec.Secrets) != len(desired.Secrets) {
			t.Fatalf("port %d: record of %d connections and %d secrets, want %d and %d", port, len(rec.Conns), len(rec.Secrets), len(desired.Conns), len(desired.Secrets))
		}
		for _, c := range desired.Conns {
			if got, want := rec.Conn(c.Name).View, viewOfBody(c.Body); got != want {
				t.Errorf("port %d: %s recorded with view %q, want %q", port, c.Name, got, want)
			}
		}
		for _, s := range desired.Secrets {
			if got, want := rec.secret(s.Name).Fingerprint, fingerprint(key, s); got != want {
				t.Errorf("port %d: secret %s recorded with fingerprint %s, want %s", port, s.Name, got, want)
			}
		}
	}
}

// A connection the record keeps as a leftover was recorded by whatever
// program could not unload it: its view is not taken over when the policy
// has it again, even though this program wrote the record since.
func TestLeftoverViewIsNotTakenOver(t *testing.T) {
	// Above the limit, unchanged connections are not compared with
	// charon's copies: the recorded view is all there is.
	defer func(n int) { compareLimit = n }(compareLimit)
	compareLimit = 0
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	desired := renderPolicy(t, 6667, true)
	if _, err := e.Apply(ctx, desired, Inputs{}); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	name := desired.Conns[0].Name
	for i := range rec.Conns {
		if rec.Conns[i].Name == name {
			rec.Conns[i].View = "a view by an older program"
		}
	}
	rec.Leftovers = append(rec.Leftovers, name)
	if err := e.Store.writeJSONs(e.Store.recordFiles(rec, allShards)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	rec, err = e.Store.Load(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Conn(name).View, viewOfBody(desired.Conns[0].Body); got != want {
		t.Errorf("%s recorded with view %q, want %q", name, got, want)
	}
	if len(rec.Leftovers) != 0 {
		t.Errorf("leftovers %q after a full apply", rec.Leftovers)
	}
}

// Several swanmgr sharing a state folder (one per charon) make the
// fingerprint key at once on their first apply: every one gets the same
// key, none fails. With one temporary name renamed in place, one of two
// first applies at once failed (TestAnsibleFleet, e2e, in CI: "rename
// fingerprint.key.tmp fingerprint.key: no such file or directory").
func TestFingerprintKeyMadeAtOnce(t *testing.T) {
	for range 20 {
		s := Store{Dir: t.TempDir()}
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				keys[i], errs[i] = s.fingerprintKey()
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("maker %d: %v", i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("maker %d got another key", i)
			}
		}
		if b := s.existingFingerprintKey(); !bytes.Equal(b, keys[0]) {
			t.Fatal("the key on disk is not the one handed out")
		}
		left, _ := filepath.Glob(filepath.Join(s.Dir, "*.tmp"))
		if len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
}
