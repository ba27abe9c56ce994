package netfilter_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
)

// nftChildren are the pids of this process's nft children.
func nftChildren(t *testing.T) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "nft" {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, pid)
		}
	}
	return out
}

// waitChildren waits until this process's nft children are what ok says.
func waitChildren(t *testing.T, what string, ok func([]int) bool) []int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if cs := nftChildren(t); ok(cs) {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nft children %v", what, nftChildren(t))
		}
	}
}

// Warm starts an nft that waits for the script of the next change, and a
// change made ready without one starts its own; the change is sent
// through that nft, which then exits. A change made ready
// and never sent leaves its nft until Close, which ends it; one whose nft
// was killed meanwhile is sent through a new one.
func TestIntegrationNftStartedAhead(t *testing.T) {
	_, tab := openTable(t)
	ctx := context.Background()
	waitChildren(t, "before", func(cs []int) bool { return len(cs) == 0 })
	a, b, c := ruleset("r-a", "6667", guard.Negotiate), ruleset("r-b", "6668", guard.Negotiate), ruleset("r-c", "6669", guard.Block)

	// Warm (an apply's start) starts one; the change made ready then
	// takes it rather than starting another.
	tab.Warm()
	ahead := waitChildren(t, "warmed", func(cs []int) bool { return len(cs) == 1 && waiting(cs[0]) })
	run, err := tab.PrepareInstall(ctx, nil, a)
	if err != nil {
		t.Fatal(err)
	}
	if cs := nftChildren(t); len(cs) != 1 || cs[0] != ahead[0] {
		t.Fatalf("made ready after Warm: nft children %v, want only %d", cs, ahead[0])
	}
	if changed, err := run(ctx); err != nil || !changed {
		t.Fatalf("sent: %v %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("sent: fingerprint %q, want a's %q", fp, a.Hash())
	}
	// The nft started ahead did it (one started now would leave the
	// one ahead waiting).
	waitChildren(t, "sent", func(cs []int) bool {
		return len(cs) == 0 || len(cs) == 1 && cs[0] == ahead[0] && !waiting(cs[0])
	})

	// Made ready, its nft killed, then sent: a new nft sends it.
	run, err = tab.PrepareInstall(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	ahead = waitChildren(t, "made ready again", func(cs []int) bool { return len(cs) == 1 && waiting(cs[0]) })
	if err := syscall.Kill(ahead[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, "killed", func(cs []int) bool { return len(cs) == 0 || len(cs) == 1 && cs[0] == ahead[0] && !waiting(cs[0]) })
	if changed, err := run(ctx); err != nil || !changed {
		t.Fatalf("sent after its nft was killed: %v %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != b.Hash() {
		t.Fatalf("sent after its nft was killed: fingerprint %q, want b's %q", fp, b.Hash())
	}

	// Made ready and never sent: Close ends its nft, and the table is
	// as it was.
	if _, err := tab.PrepareInstall(ctx, b, c); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, "made ready, not sent", func(cs []int) bool { return len(cs) == 1 && waiting(cs[0]) })
	if fp, _ := tab.Fingerprint(ctx); fp != b.Hash() {
		t.Fatalf("made ready, not sent: fingerprint %q, want b's %q", fp, b.Hash())
	}
	if err := tab.Close(); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, "closed", func(cs []int) bool { return len(cs) == 0 })
}

// waiting says whether process pid is alive and not a zombie.
func waiting(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}
