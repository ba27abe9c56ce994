package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/lab"
)

// The knowledge-base scenario written as netsh ipsec static scripts, one
// per computer, in two of the shapes real scripts have.
const (
	aliceNetsh = `:: KB301284 on Alicepc
netsh ipsec static add policy name="Alice's IPSec" description="Abczz with Bob" assign=no
netsh ipsec static add filterlist name="Abczz to Bob's PC"
netsh ipsec static add filter filterlist="Abczz to Bob's PC" srcaddr=me dstaddr=172.31.67.244 protocol=TCP dstport=6667
netsh ipsec static add filter filterlist="Abczz to Bob's PC" srcaddr=me dstaddr=172.31.67.244 protocol=TCP dstport=6668
netsh ipsec static add filter filterlist="Abczz to Bob's PC" srcaddr=172.31.67.244 dstaddr=me protocol=TCP dstport=6668
netsh ipsec static add filteraction name="Encrypt Abczz" qmpfs=yes inpass=no soft=no action=negotiate
netsh ipsec static add rule name="Abczz with Bob" policy="Alice's IPSec" filterlist="Abczz to Bob's PC" ^
    filteraction="Encrypt Abczz" conntype=lan psk="KEY"
netsh ipsec static set policy name="Alice's IPSec" assign=yes
`
	aliceConsec = `rem KB301284 on Alicepc as connection security rules
netsh advfirewall consec add rule name="Abczz to Bob" endpoint1=any endpoint2=172.31.67.244 action=requireinrequireout ^
    protocol=tcp port2=6667,6668 auth1=computerpsk auth1psk="KEY" qmpfs=mainmode
netsh advfirewall consec add rule name="Abczz from Bob" endpoint1=172.16.98.231 endpoint2=172.31.67.244 action=requireinrequireout ^
    protocol=tcp port1=6668 auth1=computerpsk auth1psk="KEY" qmpfs=mainmode
`
	bobNetsh = `# KB301284 on Bobslap
pushd ipsec static
add policy name="Bob's IPSec" assign=yes
add filterlist name="Abczz to Alice's PC"
add filter filterlist="Abczz to Alice's PC" srcaddr=172.16.98.231 dstaddr=me protocol=TCP dstport=6667
add filter filterlist="Abczz to Alice's PC" srcaddr=172.16.98.231 dstaddr=me protocol=TCP dstport=6668
add filter filterlist="Abczz to Alice's PC" srcaddr=me dstaddr=172.16.98.231 protocol=TCP dstport=6668
add filteraction name="Encrypt Abczz" qmpfs=yes action=negotiate
add rule name="Abczz with Alice" policy="Bob's IPSec" filterlist="Abczz to Alice's PC" filteraction="Encrypt Abczz" conntype=lan psk="KEY"
popd
`
)

// TestImportConsecKnowledgeBase: Alice's side as `netsh advfirewall
// consec` rules, imported, checked against Bob's example and applied with
// it in the lab: the SAs come up and Abczz crosses the wire as ESP only.
func TestImportConsecKnowledgeBase(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	keyText, err := os.ReadFile(l.example("alice-bob/alice-bob.psk"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(keyText))
	script := l.writeFile("imported/alice.wfw", strings.ReplaceAll(aliceConsec, "KEY", key), 0o644)
	alice := filepath.Join(l.examples, "imported", "alice.toml")
	r := run("swanmgr", "import", "consec", script, "-o", alice, "--address", "172.16.98.231", "--name", "Alicepc", "--policy", "Alice's IPSec")
	if r.code != 0 || strings.Contains(r.String(), key) {
		t.Fatalf("import consec: %s", r)
	}
	bob := l.example("alice-bob/bob.toml")
	if r := run("swanmgr", "check", alice, bob); r.code != 0 {
		t.Fatalf("check: %s", r)
	}
	l.mustApply("alice", alice)
	l.mustApply("bob", bob)
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("alice", "bob", 6668)
	l.sendEncrypted("bob", "alice", 6668)
}

// TestImportNetshKnowledgeBase: Alice's and Bob's netsh scripts are
// imported and `swanmgr check` finds the two imports, and the import of
// Alice against Bob's example, in agreement. Then, in a lab each, imported
// Alice is applied against imported Bob and against Bob's example: the SAs
// come up and Abczz traffic crosses the wire as ESP only.
func TestImportNetshKnowledgeBase(t *testing.T) {
	t.Parallel()
	for _, bob := range []string{"imported", "example"} {
		t.Run("bob "+bob, func(t *testing.T) {
			t.Parallel()
			importedKnowledgeBase(t, bob == "example")
		})
	}
}

func importedKnowledgeBase(t *testing.T, bobExample bool) {
	l := newLab(t, lab.Libipsec, "alice", "bob")
	keyText, err := os.ReadFile(l.example("alice-bob/alice-bob.psk"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(keyText))
	dir := filepath.Join(l.examples, "imported")
	policies := map[string]string{}
	for _, h := range []struct{ host, addr, name, script string }{
		{"alice", "172.16.98.231", "Alicepc", aliceNetsh},
		{"bob", "172.31.67.244", "Bobslap", bobNetsh},
	} {
		script := l.writeFile(filepath.Join("imported", h.host+".netsh"), strings.ReplaceAll(h.script, "KEY", key), 0o644)
		out := filepath.Join(dir, h.host+".toml")
		r := run("swanmgr", "import", "netsh", script, "-o", out, "--address", h.addr, "--name", h.name)
		if r.code != 0 || !strings.Contains(r.stdout, "passes") {
			t.Fatalf("import %s: %s", h.host, r)
		}
		if strings.Contains(r.String(), key) {
			t.Fatalf("import printed the key: %s", r)
		}
		text, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(text), key) {
			t.Fatalf("the key is in %s", out)
		}
		st, err := os.Stat(filepath.Join(dir, h.host+".psk"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s.psk: %v %v, want mode 0600", h.host, st, err)
		}
		policies[h.host] = out
	}

	for _, pair := range [][2]string{
		{policies["alice"], policies["bob"]},
		{policies["alice"], l.example("alice-bob/bob.toml")},
	} {
		if r := run("swanmgr", "check", pair[0], pair[1]); r.code != 0 {
			t.Fatalf("check %s %s: %s", pair[0], pair[1], r)
		}
	}

	bob := policies["bob"]
	if bobExample {
		bob = l.example("alice-bob/bob.toml")
	}
	l.mustApply("alice", policies["alice"])
	l.mustApply("bob", bob)
	kids := l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	for name, ch := range kids {
		if ch.Protocol != "ESP" || ch.EncrAlg != "AES_GCM_16" || ch.EncrKeysize != 256 {
			t.Errorf("%s: %s %s-%d, want security = \"high\": ESP AES_GCM_16-256", name, ch.Protocol, ch.EncrAlg, ch.EncrKeysize)
		}
	}
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)
	after := installed(l.sas("alice"))
	if b := after["sm-abczz-with-bob-1"]; b.BytesOut == 0 || b.BytesIn == 0 {
		t.Errorf("alice's SA for tcp/6667 counted %d bytes out, %d in; want traffic both ways", b.BytesOut, b.BytesIn)
	}
}
