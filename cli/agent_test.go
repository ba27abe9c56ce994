package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The agent command assigns the policy, keeps it, and exits 0 when its
// context ends (SIGTERM in the binary), leaving the assignment.
func TestAgentCommandAssignsAndExitsZero(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	state := t.TempDir()
	fake := netfilter.NewFor(knftables.NewFake(knftables.InetFamily, guard.Table))
	meta := map[string]any{firewallKey: func(string) (assign.Firewall, error) { return fake, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuf
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"swanmgr", "agent", "--socket", srv.Socket(), "--state-dir", state,
			"-f", filepath.Join(dir, "alice.toml"), "--check-interval", "50ms"}, &out, &errb, meta)
	}()
	// Wait for the apply to finish (its log line), not for the connection
	// to show: a stop while the apply runs rolls it back, as it should.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "applied policy") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not assign the policy within 10 s:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !slices.Contains(srv.ConnNames(), "sm-abczz-with-bob") {
		t.Fatalf("the agent says it applied the policy, but charon has %v", srv.ConnNames())
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("agent after its context ended: exit %d\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if !slices.Contains(srv.ConnNames(), "sm-abczz-with-bob") || srv.Count("unload-conn") != 0 {
		t.Fatalf("the agent's exit changed charon: %v", srv.ConnNames())
	}
	for _, want := range []string{"agent started", `added "Abczz with Bob"`, "agent stopping: the assignment stays in place"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the agent's log lacks %q:\n%s", want, errb.String())
		}
	}
}

// A backend that contradicts charon's is an error at once, not a wait.
func TestAgentCommandContradictingBackend(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb lockedBuf
	code := runWith(ctx, []string{"swanmgr", "agent", "--socket", srv.Socket(), "--state-dir", t.TempDir(),
		"-f", filepath.Join(dir, "alice.toml"), "--ipsec-backend", "libipsec"}, &out, &errb, nil)
	if code != ExitUsage || !strings.Contains(errb.String(), "uses the kernel backend") {
		t.Fatalf("agent --ipsec-backend libipsec against a kernel charon: exit %d\n%s", code, errb.String())
	}
	if n := srv.Count("load-conn"); n != 0 {
		t.Fatalf("%d load-conn despite the contradiction", n)
	}
}

// An invalid policy is refused before charon is even asked.
func TestAgentCommandInvalidPolicy(t *testing.T) {
	dir := example(t, "alice-bob")
	code, _, errs := runCLI("agent", "--socket", filepath.Join(t.TempDir(), "none.vici"), "--state-dir", t.TempDir(), "-f", filepath.Join(dir, "nope.toml"))
	if code != ExitFailure || !strings.Contains(errs, "nope.toml") {
		t.Fatalf("agent with a missing policy file: exit %d, %s", code, errs)
	}
}

// --metrics serves the Prometheus exporter from the agent's process.
func TestAgentCommandServesMetrics(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	fake := netfilter.NewFor(knftables.NewFake(knftables.InetFamily, guard.Table))
	meta := map[string]any{firewallKey: func(string) (assign.Firewall, error) { return fake, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuf
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"swanmgr", "agent", "--socket", srv.Socket(), "--state-dir", t.TempDir(),
			"-f", filepath.Join(dir, "alice.toml"), "--metrics", "127.0.0.1:0"}, &out, &errb, meta)
	}()
	re := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/metrics)`)
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" || !slices.Contains(srv.ConnNames(), "sm-abczz-with-bob") {
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address or no assignment within 10 s:\n%s", errb.String())
		}
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			url = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	var body string
	for body == "" || !strings.Contains(body, `swanmgr_rule_up{`) {
		if time.Now().After(deadline) {
			t.Fatalf("%s has no per-rule metrics:\n%s", url, body)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body, "swanmgr_daemon_up 1") {
		t.Errorf("the agent's exporter does not see charon up:\n%s", body)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
}

// An agent already reacting to an edit of its file when a change made
// with --confirm takes the apply lock does not assign its file over that
// change once it gets the lock: its engine checks again, under the lock,
// that nothing is pending confirmation.
func TestAgentDoesNotApplyOverAChangeBegunWhileItWaitedForTheLock(t *testing.T) {
	l := newConfirmLab(t)
	errb := l.startAgent(t)
	// Another command holds the lock (as apply --confirm does while it
	// makes its change); the agent sees its file edited, finds nothing
	// pending, and waits for the lock.
	unlock, err := l.store.Lock(context.Background(), l.srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	edit, _ := os.ReadFile(l.edited)
	if err := os.WriteFile(l.policy, edit, 0o600); err != nil {
		unlock()
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // settle (0.3 s) and a few checks
	now := time.Now().UTC()
	conf := &assign.Confirmation{ID: assign.NewConfirmationID(), Command: "apply", Started: now, Deadline: now.Add(2 * time.Minute),
		Timeout: "2m", Policy: "/elsewhere/tried.toml", PolicyHash: "0123"}
	if err := l.store.SaveConfirmation(l.srv.Socket(), conf); err != nil {
		unlock()
		t.Fatal(err)
	}
	unlock()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(errb.String(), "holding off: the apply of /elsewhere/tried.toml is pending confirmation") {
		if l.assignedEdit() {
			t.Fatalf("the agent assigned its file over the change pending confirmation:\n%s", errb.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not say it holds off:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if l.assignedEdit() {
		t.Fatalf("the agent assigned its file over the change pending confirmation:\n%s", errb.String())
	}
}

// The documented workflow — edit the agent's file, then apply --confirm
// that file — keeps its point to revert to although the agent assigns the
// edit first (it reads a changed file within a second or so): apply
// --confirm takes the assignment the agent's apply replaced as the one to
// go back to, says so, and a revert puts it back.
func TestApplyConfirmOfAnEditTheAgentAssignedFirst(t *testing.T) {
	l := newConfirmLab(t)
	errb := l.startAgent(t)
	edit, _ := os.ReadFile(l.edited)
	if err := os.WriteFile(l.policy, edit, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !l.assignedEdit() {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not assign the edit:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, errs := l.run("apply", "--confirm", "2m", "-f", l.policy)
	if code != ExitOK || !strings.Contains(out, "already assigned by swanmgr agent") || !strings.Contains(out, "pending confirmation: run `swanmgr confirm") || strings.Contains(errs, "nothing to confirm") {
		t.Fatalf("apply --confirm of the file the agent assigned: exit %d\n%s%s\nagent:\n%s", code, out, errs, errb.String())
	}
	conf, _ := l.store.LoadConfirmation(l.srv.Socket())
	if conf == nil || conf.Previous == nil || !strings.Contains(string(conf.Previous.Data), "destination_port = 6667") {
		t.Fatalf("the pending confirmation %+v does not go back to the assignment before the edit", conf)
	}
	if code, out, errs := l.run("revert"); code != ExitOK {
		t.Fatalf("revert: exit %d\n%s%s", code, out, errs)
	}
	if l.assignedEdit() {
		t.Fatal("the revert did not put the assignment before the edit back")
	}
	// The agent holds off from the reverted file and keeps charon at the
	// assignment put back.
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(errb.String(), "is the change reverted at") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not hold off from the reverted file:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if l.assignedEdit() {
		t.Fatalf("the agent assigned the reverted file again:\n%s", errb.String())
	}
}

// startAgent runs the agent on the lab's policy until the test ends, and
// returns its log once it has started.
func (l *confirmLab) startAgent(t *testing.T) *lockedBuf {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errb := &lockedBuf{}
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, []string{"swanmgr", "agent", "--socket", l.srv.Socket(), "--state-dir", l.state,
			"-f", l.policy, "--check-interval", "50ms"}, io.Discard, errb, sharedMeta(l.srv.Socket()))
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "agent started") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not start:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errb
}
