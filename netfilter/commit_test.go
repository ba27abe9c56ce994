package netfilter_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
)

// lingeringNft puts an nft first on PATH that hands the transaction to
// the real nft and then, while dir/hold exists, does not exit until
// dir/release does, as nft's exit waits for the kernel after a commit
// that deleted something. It writes its pid to dir/held when it lingers.
func lingeringNft(t *testing.T) string {
	t.Helper()
	dir := nftShim(t, `printf '%s\n' "$in" | "$real" "$@"
rc=$?
if [ -e "$dir/hold" ]; then
	echo $$ > "$dir/held.tmp" && mv "$dir/held.tmp" "$dir/held"
	while [ -d "$dir" ] && [ ! -e "$dir/release" ]; do sleep 0.02; done
fi
exit $rc`)
	// However the test ends, a lingering shim is let go and waited for
	// before its folder goes (cleanups run last first).
	t.Cleanup(func() {
		os.WriteFile(dir+"/release", nil, 0o644)
		held, err := os.ReadFile(dir + "/held")
		if err != nil {
			return
		}
		proc := "/proc/" + strings.TrimSpace(string(held))
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(proc); err != nil {
				return
			}
		}
		t.Errorf("the nft shim %s did not exit", proc)
	})
	return dir
}

// A patch returns once the kernel has committed it, not when nft exits;
// the next transaction and Close wait for that nft, which is reaped.
func TestIntegrationPatchReturnsAtCommit(t *testing.T) {
	ns := netns(t)
	dir := lingeringNft(t)
	tab, err := netfilter.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := ruleset("r-r", "6667", guard.Negotiate), ruleset("r-r2", "6668", guard.Block)
	if _, err := tab.Install(ctx, nil, a); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/hold", nil, 0o644)

	done := make(chan error, 1)
	go func() { _, err := tab.Install(ctx, a, b); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("patch: %v", err)
		}
	case <-time.After(30 * time.Second):
		os.WriteFile(dir+"/release", nil, 0o644)
		t.Fatal("the patch did not return while its nft lingered after the commit")
	}
	if _, err := os.Stat(dir + "/release"); err == nil {
		t.Fatal("released before the patch returned")
	}
	// The nft returned from may still be on its way to lingering.
	var held []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if held, err = os.ReadFile(dir + "/held"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("the patch's nft never lingered: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(held)))
	if fp, err := tab.Fingerprint(ctx); err != nil || fp != b.Hash() {
		t.Fatalf("fingerprint %q (%v), want the patch's %q", fp, err, b.Hash())
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("nft %d is gone already: the test shows nothing", pid)
	}

	closed := make(chan error, 1)
	go func() { closed <- tab.Close() }()
	os.WriteFile(dir+"/release", nil, 0o644)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// Close waited for it: the process is reaped, not a zombie.
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("nft %d still there after Close: %v", pid, err)
	}
}

// A patch nft refuses is reported as before: no commit is seen, and the
// error is nft's.
func TestIntegrationRefusedPatchStillFails(t *testing.T) {
	_, tab := openTable(t)
	dir := nftShim(t, `if [ -e "$dir/fail" ]; then
	echo 'Error: Could not process rule: No such file or directory' >&2
	exit 1
fi`)
	ctx := context.Background()
	a, b := ruleset("r-r", "6667", guard.Negotiate), ruleset("r-r2", "6668", guard.Block)
	if _, err := tab.Install(ctx, nil, a); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/fail", nil, 0o644)
	if _, err := tab.Install(ctx, a, b); err == nil || !strings.Contains(err.Error(), "No such file or directory") {
		t.Fatalf("refused patch: %v", err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("fingerprint %q, want the unchanged %q", fp, a.Hash())
	}
}
