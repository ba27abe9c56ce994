package assign

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// confirmationCalls makes the confirmation bookkeeping of a confirm and a
// revert in the folder SWANMGR_TEST_DURABLE names (the child of
// TestConfirmationBookkeepingIsDurable, run under strace).
func confirmationCalls(t *testing.T, dir string) {
	s := Store{Dir: dir}
	const sock = "/run/charon.vici"
	now := time.Now().UTC()
	for _, step := range []func() error{
		func() error {
			return s.SaveConfirmation(sock, &Confirmation{ID: "a", Command: "apply", Started: now, Deadline: now})
		},
		func() error { return s.RemoveConfirmation(sock) }, // confirm
		func() error {
			return s.SaveConfirmation(sock, &Confirmation{ID: "b", Command: "apply", Started: now, Deadline: now})
		},
		func() error { return s.SaveReverted(sock, &Reverted{At: now, Reason: "swanmgr revert"}) }, // revert: the note first
		func() error { return s.RemoveConfirmation(sock) },
		func() error { return s.SaveReverted(sock, nil) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
}

// Every rename into place and every removal of a confirmation file or a
// revert's note is followed by an fsync of the state folder before the
// next one: a power loss cannot bring a confirmed change's *.confirm.json
// back (the agent would revert a confirmed change), nor lose the note of a
// revert whose confirmation is gone. Watched with strace, in a child.
func TestConfirmationBookkeepingIsDurable(t *testing.T) {
	if dir := os.Getenv("SWANMGR_TEST_DURABLE"); dir != "" {
		confirmationCalls(t, dir)
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			t.Fatalf("SWANMGR_E2E=1 but strace is not installed (make deps-test installs it): %v", err)
		}
		t.Skip("strace is not installed: the system calls cannot be watched")
	}
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "strace")
	cmd := exec.Command(strace, "-f", "-y", "-o", out, "-e", "trace=fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2",
		os.Args[0], "-test.run=^TestConfirmationBookkeepingIsDurable$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SWANMGR_TEST_DURABLE="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		if (strings.Contains(string(b), "ptrace") || strings.Contains(string(b), "Operation not permitted")) && os.Getenv("SWANMGR_E2E") != "1" {
			t.Skipf("strace cannot trace here: %s", b)
		}
		t.Fatalf("the child under strace: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	change := regexp.MustCompile(`(unlink|unlinkat|rename|renameat|renameat2)\(.*\.(confirm|reverted)\.json"`)
	// No closing parenthesis: with threads, strace may print a call as
	// "fsync(5</dir> <unfinished ...>" and its result on a later line.
	dirSync := regexp.MustCompile(`fsync\(\d+<` + regexp.QuoteMeta(dir) + `>`)
	var pending string
	changes := 0
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case change.MatchString(line):
			if pending != "" {
				t.Errorf("no fsync of the state folder between\n  %s\nand\n  %s", pending, line)
			}
			pending = line
			changes++
		case dirSync.MatchString(line):
			pending = ""
		}
	}
	if pending != "" {
		t.Errorf("no fsync of the state folder after\n  %s", pending)
	}
	if changes != 6 {
		t.Fatalf("saw %d renames and removals of confirmation files, want 6:\n%s", changes, b)
	}
}

// The snapshot an apply replaced is kept with what replaced it; one the
// apply left in place (nothing changed) or rewrote the same is not.
func TestKeepReplacedKeepsTheSnapshotAnApplyReplaced(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	const sock = "/run/charon.vici"
	if m, err := s.MarkSnapshot(sock); m != nil || err != nil {
		t.Fatalf("mark without a snapshot: %v, %v", m, err)
	}
	write := func(data string) *Snapshot {
		t.Helper()
		snap := &Snapshot{Path: "/etc/swanmgr/policy.toml", Data: []byte(data), Backend: "kernel"}
		if err := s.writeJSON(s.path(sock, ".policy.json"), snap); err != nil {
			t.Fatal(err)
		}
		return snap
	}
	keep := func(apply func()) bool {
		t.Helper()
		m, err := s.MarkSnapshot(sock)
		if err != nil || m == nil {
			t.Fatalf("mark: %v, %v", m, err)
		}
		defer m.Close()
		apply()
		kept, err := s.KeepReplaced(sock, m, true)
		if err != nil {
			t.Fatal(err)
		}
		return kept
	}
	write("A")
	if keep(func() {}) {
		t.Fatal("kept a snapshot the apply did not replace")
	}
	if keep(func() { write("A") }) {
		t.Fatal("kept a snapshot the apply rewrote the same")
	}
	var b *Snapshot
	if !keep(func() { b = write("B") }) {
		t.Fatal("did not keep the snapshot the apply replaced")
	}
	r, err := s.LoadReplaced(sock)
	if err != nil || r == nil || string(r.Snapshot.Data) != "A" || r.By != SnapshotHash(b) || !r.Agent {
		t.Fatalf("kept %+v, %v; want A, replaced by B's hash, by the agent", r, err)
	}
	if err := s.RemoveReplaced(sock); err != nil {
		t.Fatal(err)
	}
	if r, err := s.LoadReplaced(sock); r != nil || err != nil {
		t.Fatalf("after RemoveReplaced: %+v, %v", r, err)
	}
}
