package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// status --watch asks for the guard on every refresh: the guard record is
// read again only when the record names another guard.
func TestGuardReaderReadsTheRecordOncePerGuard(t *testing.T) {
	srv := vicitest.NewServer(t)
	state := t.TempDir()
	dir := example(t, "alice-bob")
	if code, _, errs := runCLI("apply", "--socket", srv.Socket(), "--state-dir", state, "-f", filepath.Join(dir, "alice.toml")); code != ExitOK {
		t.Fatalf("apply: exit %d\n%s", code, errs)
	}
	store := assign.Store{Dir: state}
	rec, err := store.Load(srv.Socket())
	if err != nil || rec == nil || rec.GuardHash == "" {
		t.Fatalf("record %+v, %v: want one with a guard", rec, err)
	}
	files, _ := filepath.Glob(filepath.Join(state, "*.guard.json"))
	if len(files) != 1 {
		t.Fatalf("guard records %v", files)
	}
	g := newGuardReader(store, srv.Socket(), map[string]any{firewallKey: func(string) (assign.Firewall, error) { return nil, os.ErrNotExist }})
	ctx := context.Background()
	first, _, _ := g.Guard(ctx, rec)
	if first == nil || len(first.Entries) == 0 {
		t.Fatalf("first read: %+v", first)
	}
	// The file goes away: the same guard comes from memory.
	saved, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(files[0])
	if again, _, _ := g.Guard(ctx, rec); again != first {
		t.Fatalf("second read with the same guard hash: %p, want the first ruleset %p", again, first)
	}
	// Another guard hash reads the file again.
	other := *rec
	other.GuardHash = "another"
	if rs, _, _ := g.Guard(ctx, &other); rs != nil {
		t.Fatalf("a new guard hash without its file: %p; want the file read again (and none found)", rs)
	}
	if err := os.WriteFile(files[0], saved, 0o600); err != nil {
		t.Fatal(err)
	}
	// (The counters' error is the opener's: no firewall in this test.)
	if rs, _, _ := g.Guard(ctx, rec); rs == nil || rs == first {
		t.Fatalf("after a change of guard: %p; want a fresh read", rs)
	}
}
