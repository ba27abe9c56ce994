package render_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

// TestWithEmptyEtcServices runs the selector tests again in a private
// mount namespace whose /etc/services is empty, as in an image without
// netbase: the service names charon prints must parse the same there.
func TestWithEmptyEtcServices(t *testing.T) {
	runWithEmptyServices(t, "TestParseTSDashedServiceName", "TestParseTSServiceNames", "TestTrafficSelectors", "TestGolden")
}

func TestParseTSServiceNames(t *testing.T) {
	for in, want := range map[string][2]int{
		"10.0.0.1/32[tcp/ircd]":         {6667, 6667},
		"10.0.0.1/32[udp/domain]":       {53, 53},
		"10.0.0.1/32[6/https]":          {443, 443},
		"10.0.0.1/32[udp/ntp-1000]":     {123, 1000},
		"10.0.0.1/32[tcp/zabbix-agent]": {10050, 10050},
		"10.0.0.1/32[sctp/http]":        {80, 80},
	} {
		got, err := render.ParseTS(in)
		if err != nil || got.PortLo != want[0] || got.PortHi != want[1] {
			t.Errorf("ParseTS(%q) = %d-%d, %v; want %d-%d", in, got.PortLo, got.PortHi, err, want[0], want[1])
		}
	}
	if _, err := render.ParseTS("10.0.0.1/32[tcp/no-such-service]"); err == nil || !strings.Contains(err.Error(), `unknown port "no-such-service"`) {
		t.Errorf("unknown name: %v", err)
	}
}

// runWithEmptyServices re-runs this test binary's tests named in a mount
// namespace of its own where an empty file is bind-mounted over
// /etc/services (nothing outside the namespace sees it), and fails
// unless each passed there.
func runWithEmptyServices(t *testing.T, tests ...string) {
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

func TestProtoName(t *testing.T) {
	for n, want := range map[int]string{1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 58: "ipv6-icmp", 132: "sctp", 50: "50"} {
		if got := render.ProtoName(n); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", n, got, want)
		}
		if n == 50 {
			continue
		}
		if ts, err := render.ParseTS("10.0.0.1/32[" + want + "]"); err != nil || ts.Proto != n {
			t.Errorf("ParseTS of %s: %+v %v", want, ts, err)
		}
	}
}
