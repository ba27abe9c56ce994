package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// The image's HEALTHCHECK: unhealthy until the policy is assigned (the
// ready file) and while charon does not answer; healthy with both.
func TestLabHostHealth(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := runCLI("lab", "host", "--health", "--dir", dir)
	if code != ExitFailure || !strings.Contains(errs, "not assigned") {
		t.Fatalf("no ready file: exit %d\n%s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI("lab", "host", "--health", "--dir", dir)
	if code != ExitFailure || !strings.Contains(errs, "charon does not answer") {
		t.Fatalf("ready file, no charon: exit %d\n%s", code, errs)
	}
	srv := vicitest.NewServer(t)
	if err := os.Symlink(srv.Socket(), filepath.Join(dir, "charon.vici")); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("lab", "host", "--health", "--dir", dir)
	if code != ExitOK || !strings.Contains(out, "healthy") {
		t.Fatalf("ready and answering: exit %d\n%s%s", code, out, errs)
	}
}

// Without --health, the host name and policy are required.
func TestLabHostNeedsNameAndFile(t *testing.T) {
	code, _, errs := runCLI("lab", "host", "--dir", t.TempDir())
	if code != ExitUsage || !strings.Contains(errs, "--name and --file") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
}
