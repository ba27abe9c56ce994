package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// fakeFirewalls holds one fake nftables per charon socket, so that the
// guard a command installs is there for the next command on that socket;
// tests never touch the firewall of the machine they run on.
var fakeFirewalls sync.Map

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	meta := map[string]any{firewallKey: func(sock string) (assign.Firewall, error) {
		f, _ := fakeFirewalls.LoadOrStore(sock, netfilter.NewFor(knftables.NewFake(knftables.InetFamily, guard.Table)))
		return f.(*netfilter.Table), nil
	}}
	code := runWith(context.Background(), append([]string{"swanmgr"}, args...), &out, &errb, meta)
	return code, out.String(), errb.String()
}

// example copies an example folder with its key private, as a checkout
// would be after `chmod 600`.
func example(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("..", "examples", dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("..", "examples", dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestValidateExitCodes(t *testing.T) {
	dir := example(t, "alice-bob")
	alice := filepath.Join(dir, "alice.toml")
	if code, out, errs := runCLI("validate", "-f", alice); code != ExitOK || !strings.Contains(out, "valid") {
		t.Fatalf("valid file: exit %d\n%s%s", code, out, errs)
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[endpoint]\naddresses = [\"not-an-ip\"]\nbogus = 1\n"), 0o644)
	code, _, errs := runCLI("validate", "-f", bad)
	if code != ExitFailure || !strings.Contains(errs, "bad.toml:3") {
		t.Fatalf("invalid file: exit %d, stderr %q; want 1 and the file:line", code, errs)
	}

	if code, _, _ := runCLI("validate", "--no-such-flag"); code != ExitUsage {
		t.Fatalf("unknown flag: exit %d, want %d", code, ExitUsage)
	}
	if code, _, _ := runCLI("validate", "-f", alice, "extra"); code != ExitUsage {
		t.Fatalf("extra argument: exit %d, want %d", code, ExitUsage)
	}
	if code, _, _ := runCLI("render", "-f", alice, "--ipsec-backend", "sideways"); code != ExitUsage {
		t.Fatalf("unknown backend: exit %d, want %d", code, ExitUsage)
	}

	// A key file others can read is refused, unless asked.
	os.Chmod(filepath.Join(dir, "alice-bob.psk"), 0o644)
	if code, _, errs := runCLI("validate", "-f", alice); code != ExitFailure || !strings.Contains(errs, "readable by group or others") {
		t.Fatalf("world-readable key: exit %d, stderr %q", code, errs)
	}
	if code, _, _ := runCLI("validate", "-f", alice, "--insecure-secrets"); code != ExitOK {
		t.Fatalf("world-readable key with --insecure-secrets: exit %d", code)
	}
}

func TestRenderRedactsSecrets(t *testing.T) {
	dir := example(t, "alice-bob")
	psk, _ := os.ReadFile(filepath.Join(dir, "alice-bob.psk"))
	key := strings.TrimSpace(string(psk))
	code, out, errs := runCLI("render", "-f", filepath.Join(dir, "alice.toml"))
	if code != ExitOK || strings.Contains(out+errs, key) || !strings.Contains(out, "redacted") {
		t.Fatalf("render without --show-secrets: exit %d, key shown: %v", code, strings.Contains(out+errs, key))
	}
	code, out, _ = runCLI("render", "-f", filepath.Join(dir, "alice.toml"), "--show-secrets")
	if code != ExitOK || !strings.Contains(out, key) {
		t.Fatalf("render --show-secrets: exit %d, key shown: %v", code, strings.Contains(out, key))
	}
}

func TestUnreachableSocket(t *testing.T) {
	dir := example(t, "alice-bob")
	sock := filepath.Join(t.TempDir(), "nothing.vici")
	code, _, errs := runCLI("apply", "--socket", "unix://"+sock, "--state-dir", t.TempDir(), "-f", filepath.Join(dir, "alice.toml"))
	if code != ExitFailure || !strings.Contains(errs, "cannot reach charon at "+sock+": is it running?") {
		t.Fatalf("apply to a missing socket: exit %d, stderr %q", code, errs)
	}
}

func TestApplyPlanUnassignAgainstFake(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	psk, _ := os.ReadFile(filepath.Join(dir, "alice-bob.psk"))
	key := strings.TrimSpace(string(psk))
	state := t.TempDir()
	alice := filepath.Join(dir, "alice.toml")
	common := []string{"--socket", srv.Socket(), "--state-dir", state}

	code, out, errs := runCLI(append([]string{"plan", "--exit-code", "-f", alice}, common...)...)
	if code != ExitChanges || !strings.Contains(out, "+ Abczz with Bob") {
		t.Fatalf("plan before apply: exit %d\n%s%s", code, out, errs)
	}
	if n := srv.Count("load-conn"); n != 0 {
		t.Fatalf("plan sent %d load-conn", n)
	}
	code, out, errs = runCLI(append([]string{"apply", "-f", alice}, common...)...)
	if code != ExitOK || !strings.Contains(out, "1 added") || strings.Contains(out+errs, key) {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(append([]string{"plan", "--exit-code", "-f", alice}, common...)...)
	if code != ExitOK || !strings.Contains(out, "no changes") {
		t.Fatalf("plan after apply: exit %d\n%s", code, out)
	}
	code, out, errs = runCLI(append([]string{"unassign"}, common...)...)
	if code != ExitOK || !strings.Contains(out, "1 connection and 1 secret unloaded") {
		t.Fatalf("unassign: exit %d\n%s%s", code, out, errs)
	}
	for _, r := range srv.Received() {
		if strings.Contains(r.Message.String(), "redacted") {
			t.Fatalf("%s was sent the placeholder instead of the key", r.Command)
		}
	}
}

// Names from a policy file reach the terminal escaped: a rule called with
// a newline, an escape sequence or a right-to-left override cannot move
// the cursor, colour the screen or reorder the output.
func TestPlanEscapesNames(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	alice := filepath.Join(dir, "alice.toml")
	b, _ := os.ReadFile(alice)
	evil := strings.Replace(string(b), `name = "Abczz with Bob"`, `name = "Abczz\nwith \u001b[31mBob\u202e"`, 1)
	if err := os.WriteFile(alice, []byte(evil), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--socket", srv.Socket(), "--state-dir", t.TempDir(), "-f", alice}
	for _, cmd := range []string{"plan", "apply"} {
		code, out, errs := runCLI(append([]string{cmd}, common...)...)
		if code != ExitOK && code != ExitChanges {
			t.Fatalf("%s: exit %d\n%s%s", cmd, code, out, errs)
		}
		if strings.ContainsAny(out, "\x1b\u202e") || strings.Contains(out, "Abczz\nwith") {
			t.Fatalf("%s printed a raw control or format character:\n%q", cmd, out)
		}
		if !strings.Contains(out, `Abczz\nwith \x1b[31mBob\u202e`) {
			t.Fatalf("%s did not show the escaped name:\n%s", cmd, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasSuffix(line, " ") {
				t.Fatalf("%s: trailing blanks in %q", cmd, line)
			}
		}
	}
}
