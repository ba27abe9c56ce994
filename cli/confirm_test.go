package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// --confirm needs a way back: an assignment whose preshared key is
// written inline has no copy on disk (swanmgr never writes secrets), so
// a --confirm change of it is refused before anything changes, and no
// watchdog is started.
func TestConfirmRefusedWithoutAWayBack(t *testing.T) {
	srv := vicitest.NewServer(t)
	state := t.TempDir()
	dir := example(t, "alice-bob")
	alice := filepath.Join(dir, "alice.toml")
	data, err := os.ReadFile(alice)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "alice-bob.psk"))
	inline := strings.Replace(string(data), `secret_file = "alice-bob.psk"`, `secret = "`+strings.TrimSpace(string(key))+`"`, 1)
	if inline == string(data) {
		t.Fatal("alice.toml has no secret_file to inline")
	}
	inlined := filepath.Join(dir, "inline.toml")
	os.WriteFile(inlined, []byte(inline), 0o600)
	common := []string{"--socket", srv.Socket(), "--state-dir", state}
	if code, _, errs := runCLI(append([]string{"apply", "-f", inlined, "--insecure-secrets"}, common...)...); code != ExitOK {
		t.Fatalf("apply of the inline-key policy: exit %d\n%s", code, errs)
	}
	loads := len(srv.Commands())
	code, out, errs := runCLI(append([]string{"apply", "-f", alice, "--confirm", "2m"}, common...)...)
	if code != ExitFailure || !strings.Contains(errs, "cannot be restored faithfully") || !strings.Contains(errs, "move its keys to secret_file") {
		t.Fatalf("apply --confirm over an inline-key assignment: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out+errs, strings.TrimSpace(string(key))) {
		t.Fatal("the refusal shows the key")
	}
	for _, c := range srv.Commands()[loads:] {
		if c == "load-conn" || c == "unload-conn" || c == "load-shared" || c == "unload-shared" {
			t.Fatalf("the refused --confirm sent %s", c)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(state, "*confirm*")); len(files) != 0 {
		t.Fatalf("the refused --confirm left %v", files)
	}
}

// sharedMeta is the metadata of commands on one fake charon: they share
// its fake nftables.
func sharedMeta(sock string) map[string]any {
	return map[string]any{firewallKey: func(string) (assign.Firewall, error) {
		f, _ := fakeFirewalls.LoadOrStore(sock, netfilter.NewFor(knftables.NewFake(knftables.InetFamily, guard.Table)))
		return f.(*netfilter.Table), nil
	}}
}

// confirmLab is a fake charon with Alice's policy assigned and an edit of
// it (port 6667 -> 6669) in edit.toml.
type confirmLab struct {
	t                     *testing.T
	srv                   *vicitest.Server
	state, policy, edited string
	store                 assign.Store
}

func newConfirmLab(t *testing.T) *confirmLab {
	t.Helper()
	dir := example(t, "alice-bob")
	l := &confirmLab{t: t, srv: vicitest.NewServer(t), state: t.TempDir(), policy: filepath.Join(dir, "alice.toml"), edited: filepath.Join(dir, "edit.toml")}
	l.store = assign.Store{Dir: l.state}
	data, err := os.ReadFile(l.policy)
	if err != nil {
		t.Fatal(err)
	}
	edit := strings.Replace(string(data), "destination_port = 6667", "destination_port = 6669", 1)
	if edit == string(data) {
		t.Fatal("alice.toml has no port 6667 to edit")
	}
	if err := os.WriteFile(l.edited, []byte(edit), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := l.run("apply", "-f", l.policy); code != ExitOK {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	return l
}

// run runs one command on the lab's charon and state folder.
func (l *confirmLab) run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := l.runTo(&out, &errb, args...)
	return code, out.String(), errb.String()
}

func (l *confirmLab) runTo(stdout, stderr io.Writer, args ...string) int {
	args = append(append([]string{"swanmgr"}, args...), "--socket", l.srv.Socket(), "--state-dir", l.state)
	return runWith(context.Background(), args, stdout, stderr, sharedMeta(l.srv.Socket()))
}

// assigned says whether the record has the edit (port 6669) assigned.
func (l *confirmLab) assignedEdit() bool {
	l.t.Helper()
	rec, err := l.store.Load(l.srv.Socket())
	if err != nil || rec == nil || len(rec.Conns) == 0 {
		l.t.Fatalf("no record: %v", err)
	}
	return strings.Contains(rec.Conns[0].View, "6669")
}

// hookWriter runs fn once, synchronously, at the first write containing
// marker: in the revert's output, right after the change was made.
type hookWriter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	marker string
	fn     func()
	done   bool
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	fire := !h.done && strings.Contains(string(p), h.marker)
	h.done = h.done || fire
	h.b.Write(p)
	h.mu.Unlock()
	if fire {
		h.fn()
	}
	return len(p), nil
}

// A confirm right after a revert made its change (it waited for the lock
// the revert held) finds the change reverted: the revert's note and the
// end of the confirmation are written under the same hold of the lock as
// the change, so it never says "confirmed ... stays" of a change charon
// no longer has.
func TestConfirmJustAfterARevertSaysReverted(t *testing.T) {
	l := newConfirmLab(t)
	if code, out, errs := l.run("apply", "--confirm", "2m", "-f", l.edited); code != ExitOK || !l.assignedEdit() {
		t.Fatalf("apply --confirm: exit %d\n%s%s", code, out, errs)
	}
	var code int
	var out, errs string
	hw := &hookWriter{marker: "reverted (", fn: func() { code, out, errs = l.run("confirm") }}
	var revErr bytes.Buffer
	if rc := l.runTo(hw, &revErr, "revert"); rc != ExitOK {
		t.Fatalf("revert: exit %d\n%s%s", rc, hw.b.String(), revErr.String())
	}
	if !hw.done {
		t.Fatalf("the revert said nothing of reverting:\n%s", hw.b.String())
	}
	if code == ExitOK || strings.Contains(out, "stays") || !strings.Contains(errs, "was reverted at") {
		t.Fatalf("confirm right after the revert: exit %d\n%s%s\nwant: nothing to confirm, the change was reverted", code, out, errs)
	}
	if l.assignedEdit() {
		t.Fatal("the reverted change is assigned")
	}
	if conf, _ := l.store.LoadConfirmation(l.srv.Socket()); conf != nil {
		t.Fatalf("a confirmation is left after the revert: %+v", conf)
	}
	if r, _ := l.store.LoadReverted(l.srv.Socket()); r == nil || r.Error != "" {
		t.Fatalf("the revert's note: %+v", r)
	}
}

// An apply --confirm right after a revert made its change starts a
// confirmation of its own, which the finishing revert leaves in place;
// before, it extended the one being reverted, which the revert then
// removed: a change applied as "pending confirmation" with nothing left to
// revert it.
func TestApplyConfirmJustAfterARevertIsPending(t *testing.T) {
	l := newConfirmLab(t)
	if code, out, errs := l.run("apply", "--confirm", "2m", "-f", l.edited); code != ExitOK {
		t.Fatalf("apply --confirm: exit %d\n%s%s", code, out, errs)
	}
	first, _ := l.store.LoadConfirmation(l.srv.Socket())
	var code int
	var out, errs string
	hw := &hookWriter{marker: "reverted (", fn: func() { code, out, errs = l.run("apply", "--confirm", "2m", "-f", l.edited) }}
	var revErr bytes.Buffer
	if rc := l.runTo(hw, &revErr, "revert"); rc != ExitOK || !hw.done {
		t.Fatalf("revert: exit %d\n%s%s", rc, hw.b.String(), revErr.String())
	}
	if code != ExitOK || !strings.Contains(out, "pending confirmation") {
		t.Fatalf("apply --confirm right after the revert: exit %d\n%s%s", code, out, errs)
	}
	conf, _ := l.store.LoadConfirmation(l.srv.Socket())
	if !l.assignedEdit() || conf == nil || conf.ID == first.ID {
		t.Fatalf("after apply --confirm in the revert's wake: the edit assigned %v, confirmation %+v (the reverted one was %s); want the edit pending a confirmation of its own", l.assignedEdit(), conf, first.ID)
	}
}

// Extending a pending change (apply --confirm again) starts a watchdog
// for it when the one recorded is gone (a reboot without the agent): the
// operator is told the change reverts, and something must revert it.
func TestExtendingStartsAWatchdogWhenTheOldOneIsGone(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "watchdogs")
	t.Setenv(watchdogTrace, trace)
	l := newConfirmLab(t)
	started := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(trace)
			lines := strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
			if len(lines) >= n || time.Now().After(deadline) {
				return lines
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code, out, errs := l.run("apply", "--confirm", "2m", "-f", l.edited); code != ExitOK {
		t.Fatalf("apply --confirm: exit %d\n%s%s", code, out, errs)
	}
	first, _ := l.store.LoadConfirmation(l.srv.Socket())
	if w := started(1); len(w) != 1 || !strings.Contains(w[0], first.ID) {
		t.Fatalf("watchdogs started by apply --confirm: %q", w)
	}
	// The test's watchdog exits at once (as after a reboot).
	for deadline := time.Now().Add(5 * time.Second); watchdogAlive(first.Watchdog); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the test's watchdog %d did not exit", first.Watchdog)
		}
	}
	if code, out, errs := l.run("apply", "--confirm", "5m", "-f", l.edited); code != ExitOK {
		t.Fatalf("apply --confirm again: exit %d\n%s%s", code, out, errs)
	}
	w := started(2)
	if len(w) != 2 || !strings.Contains(w[1], "--id_"+first.ID) {
		t.Fatalf("watchdogs started after extending a change whose watchdog is gone: %q; want a second one for %s", w, first.ID)
	}
	conf, _ := l.store.LoadConfirmation(l.srv.Socket())
	if conf == nil || conf.ID != first.ID || conf.Watchdog == first.Watchdog || conf.Timeout != "5m0s" {
		t.Fatalf("the extended confirmation: %+v (was %+v); want the same one, 5m, with the new watchdog's pid", conf, first)
	}
}

// An apply --confirm that extends a pending change and then waits for the
// lock a revert of that change holds does not make its change once the
// revert ended the confirmation: it would be left with nothing to revert
// it, though the command says it reverts.
func TestApplyConfirmExtendingAChangeBeingRevertedChangesNothing(t *testing.T) {
	l := newConfirmLab(t)
	if code, out, errs := l.run("apply", "--confirm", "2m", "-f", l.edited); code != ExitOK {
		t.Fatalf("apply --confirm: exit %d\n%s%s", code, out, errs)
	}
	first, _ := l.store.LoadConfirmation(l.srv.Socket())
	if first == nil {
		t.Fatal("no confirmation")
	}
	unlock, err := l.store.Lock(context.Background(), l.srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := l.run("apply", "--confirm", "5m", "-f", l.policy)
		done <- result{code, out, errs}
	}()
	// The extension is recorded (before the lock); the revert holding the
	// lock then ends the confirmation.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cur, _ := l.store.LoadConfirmation(l.srv.Socket()); cur != nil && cur.Timeout == "5m0s" {
			break
		}
		if time.Now().After(deadline) {
			unlock()
			t.Fatal("apply --confirm did not extend the confirmation")
		}
	}
	if err := l.store.RemoveConfirmation(l.srv.Socket()); err != nil {
		unlock()
		t.Fatal(err)
	}
	unlock()
	r := <-done
	if r.code == ExitOK || !strings.Contains(r.errs, "nothing was changed") {
		t.Fatalf("apply --confirm extending a change that was reverted meanwhile: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	if !l.assignedEdit() {
		t.Fatal("the change was made with no confirmation left to revert it")
	}
}

// An apply without --confirm checks for a pending change before it waits
// for the lock, and again under it: an apply --confirm that recorded its
// confirmation in between (its point to revert to read before this change)
// would otherwise have this change made under its watch, and its revert
// take this change away too.
func TestApplyRefusedWhenAConfirmationCameWhileItWaited(t *testing.T) {
	l := newConfirmLab(t)
	unlock, err := l.store.Lock(context.Background(), l.srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	checked := make(chan struct{})
	pendingChecked = func() { close(checked) }
	defer func() { pendingChecked = nil }()
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := l.run("apply", "-f", l.edited)
		done <- result{code, out, errs}
	}()
	<-checked
	now := time.Now().UTC()
	if err := l.store.SaveConfirmation(l.srv.Socket(), &assign.Confirmation{ID: assign.NewConfirmationID(), Command: "apply",
		Started: now, Deadline: now.Add(time.Minute), Timeout: "1m0s", Policy: l.policy}); err != nil {
		unlock()
		t.Fatal(err)
	}
	unlock()
	r := <-done
	if r.code == ExitOK || !strings.Contains(r.errs, "pending confirmation") || !strings.Contains(r.errs, "nothing was changed") {
		t.Fatalf("apply while a confirmation came: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	if l.assignedEdit() {
		t.Fatal("the change was made while another waited for confirmation")
	}
}
