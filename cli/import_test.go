package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const importKey = "Alice and Bob's long preshared key 2026"

// importScript is the knowledge base's Alice as netsh commands
// (importer/testdata/kb-alice.txt has the golden output).
func importScript(t *testing.T, extra string) (dir, script string) {
	t.Helper()
	dir = t.TempDir()
	text := `netsh ipsec static add policy name="Alice's IPSec" assign=yes
netsh ipsec static add filterlist name="Abczz to Bob's PC"
netsh ipsec static add filter filterlist="Abczz to Bob's PC" srcaddr=me dstaddr=172.31.67.244 protocol=TCP dstport=6667
netsh ipsec static add filteraction name="Encrypt Abczz" qmpfs=yes action=negotiate
netsh ipsec static add rule name="Abczz with Bob" policy="Alice's IPSec" filterlist="Abczz to Bob's PC" filteraction="Encrypt Abczz" psk="` + importKey + `"
` + extra
	script = filepath.Join(dir, "alice.netsh")
	if err := os.WriteFile(script, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, script
}

func noKey(t *testing.T, where ...string) {
	t.Helper()
	for _, s := range where {
		if strings.Contains(s, importKey) {
			t.Fatalf("the preshared key shows up in the output:\n%s", s)
		}
	}
}

func TestImportNetsh(t *testing.T) {
	dir, script := importScript(t, "")
	out := filepath.Join(dir, "alice.toml")
	// Flags after the file, as the usage line writes them.
	code, stdout, stderr := runCLI("import", "netsh", script, "-o", out, "--address", "172.16.98.231", "--name", "Alicepc")
	noKey(t, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, `policy "Alice's IPSec" imported from `+script+": 1 rule, 1 key file (mode 0600); `swanmgr validate -f "+out+"` passes") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	noKey(t, string(text))
	if !strings.Contains(string(text), `secret_file = "alice.psk"`) {
		t.Errorf("the policy does not reference alice.psk:\n%s", text)
	}
	st, err := os.Stat(filepath.Join(dir, "alice.psk"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", st, err)
	}
	if k, _ := os.ReadFile(filepath.Join(dir, "alice.psk")); string(k) != importKey+"\n" {
		t.Errorf("key file holds %d bytes, not the script's key", len(k))
	}
	if code, stdout, stderr := runCLI("validate", "-f", out); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, stdout, stderr)
	}
	// Again: the files exist.
	code, _, stderr = runCLI("import", "netsh", "--address", "172.16.98.231", "-o", out, script)
	if code != ExitUsage || !strings.Contains(stderr, out+" exists: use --force") {
		t.Fatalf("second import: exit %d, %s", code, stderr)
	}
	if code, _, stderr = runCLI("import", "netsh", "--address", "172.16.98.231", "-o", out, "--force", script); code != 0 {
		t.Fatalf("--force: exit %d, %s", code, stderr)
	}
}

func TestImportNetshRefusals(t *testing.T) {
	kerberos := `netsh ipsec static add filterlist name="Eve"
netsh ipsec static add filter filterlist="Eve" srcaddr=me dstaddr=172.20.0.5
netsh ipsec static add rule name="Eve" policy="Alice's IPSec" filterlist="Eve" filteraction="Encrypt Abczz" kerberos=yes
`
	for _, c := range []struct {
		name, extra string
		args        []string
		code        int
		want        []string
	}{
		{"partial", kerberos, nil, ExitFailure, []string{
			"alice.netsh:8: not carried over: rule \"Eve\": kerberos=yes: strongSwan has no Kerberos; use certificates or a preshared key",
			"nothing written; --allow-partial writes"}},
		{"bad line", "netsh ipsec static add filter filterlist=\"Abczz to Bob's PC\" srcaddr=me dstaddr=10.0.0.0 dstmask=255.0.255.0\n", nil, ExitFailure, []string{
			"alice.netsh:6: add filter: dstaddr=\"10.0.0.0\": mask \"255.0.255.0\" has a hole"}},
		{"does not validate", "netsh ipsec static add filter filterlist=\"Abczz to Bob's PC\" srcaddr=me dstaddr=172.31.67.244 protocol=ICMP\nnetsh ipsec static add filter filterlist=\"Abczz to Bob's PC\" srcaddr=me dstaddr=2001:db8::2 protocol=ICMP\n", nil, ExitFailure, []string{
			"the imported policy does not validate, nothing written", "never matches IPv6 traffic"}},
		{"no address", "", []string{"--address="}, ExitUsage, []string{"give --address"}},
		{"key to stdout", "", []string{"-o="}, ExitUsage, []string{"alice.netsh:5: give -o OUT.toml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, script := importScript(t, c.extra)
			out := filepath.Join(dir, "alice.toml")
			args := []string{"import", "netsh", "--address", "172.16.98.231", "-o", out}
			for _, a := range c.args {
				switch a {
				case "--address=":
					args = []string{"import", "netsh", "-o", out}
				case "-o=":
					args = []string{"import", "netsh", "--address", "172.16.98.231"}
				}
			}
			code, stdout, stderr := runCLI(append(args, script)...)
			noKey(t, stdout, stderr)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("files were written: %v", ents)
			}
			if c.name == "partial" {
				code, stdout, stderr := runCLI(append(args, "--allow-partial", script)...)
				noKey(t, stdout, stderr)
				if code != 0 {
					t.Fatalf("--allow-partial: exit %d\n%s", code, stderr)
				}
				if code, _, stderr := runCLI("validate", "-f", out); code != 0 {
					t.Fatalf("validate: %s", stderr)
				}
			}
		})
	}
}

func TestImportConsec(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "alice.wfw")
	text := "netsh advfirewall consec add rule name=\"Abczz with Bob\" endpoint1=any endpoint2=172.31.67.244 action=requireinrequireout protocol=tcp port2=6667 auth1=computerpsk auth1psk=\"" + importKey + "\"\n"
	if err := os.WriteFile(script, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "alice.toml")
	code, stdout, stderr := runCLI("import", "consec", script, "-o", out, "--address", "172.16.98.231", "--policy", "Alice's IPSec")
	noKey(t, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, `policy "Alice's IPSec" imported`) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI("validate", "-f", out); code != 0 {
		t.Fatalf("validate: exit %d\n%s%s", code, stdout, stderr)
	}
	// The same line given to import netsh is refused, naming the line.
	code, _, stderr = runCLI("import", "netsh", script, "--address", "172.16.98.231", "-o", filepath.Join(dir, "x.toml"))
	if code != ExitFailure || !strings.Contains(stderr, "alice.wfw:1: an advfirewall consec rule: import those with `swanmgr import consec`") {
		t.Fatalf("netsh on a consec script: exit %d, %s", code, stderr)
	}
}
