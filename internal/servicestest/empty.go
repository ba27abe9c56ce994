package servicestest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RunWithEmpty re-runs this test binary's tests named in a mount
// namespace of its own where an empty file is bind-mounted over
// /etc/services (nothing outside the namespace sees it), and fails
// unless each passed there.
func RunWithEmpty(t *testing.T, tests ...string) {
	t.Helper()
	if os.Getenv("SWANMGR_EMPTY_SERVICES") == "1" {
		if b, err := os.ReadFile("/etc/services"); err == nil && len(b) > 0 {
			t.Fatal("/etc/services is not empty in the child run")
		}
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("SWANMGR_E2E") == "1" {
			t.Fatal("needs root for a private mount namespace")
		}
		t.Skip("needs root for a private mount namespace (SWANMGR_E2E=1 makes this a failure)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux): %v", err)
	}
	empty := filepath.Join(t.TempDir(), "services")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pattern := "^(" + strings.Join(append(tests, t.Name()), "|") + ")$"
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/services && exec "$2" -test.run "$3" -test.count=1 -test.v`,
		"sh", empty, os.Args[0], pattern)
	cmd.Env = append(os.Environ(), "SWANMGR_EMPTY_SERVICES=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with an empty /etc/services: %v\n%s", err, out)
	}
	for _, name := range tests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass with an empty /etc/services:\n%s", name, out)
		}
	}
	t.Logf("with an empty /etc/services:\n%s", out)
}
