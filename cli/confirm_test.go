package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
