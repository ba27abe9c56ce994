package e2e

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/lab"
)

// Alice and Bob share no secret, only the lab CA: the certificate example
// establishes, each side sees the other's address as its identity, and
// traffic crosses the wire as ESP only.
func TestCertificates(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob-certs/alice.toml"))
	// Bob's files in DER: swanmgr accepts them and charon takes them over
	// VICI as well.
	for _, f := range []struct{ pem, der string }{{"ca.pem", "ca.der"}, {"bob.pem", "bob.der"}, {"bob.key", "bob-key.der"}} {
		b, err := os.ReadFile(l.example("alice-bob-certs/" + f.pem))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", f.pem)
		}
		l.writeFile("alice-bob-certs/"+f.der, string(blk.Bytes), 0o600)
	}
	bobPol, err := os.ReadFile(l.example("alice-bob-certs/bob.toml"))
	if err != nil {
		t.Fatal(err)
	}
	der := strings.NewReplacer(`"ca.pem"`, `"ca.der"`, `"bob.pem"`, `"bob.der"`, `"bob.key"`, `"bob-key.der"`).Replace(string(bobPol))
	if der == string(bobPol) {
		t.Fatal("bob.toml no longer names ca.pem, bob.pem, bob.key")
	}
	l.mustApply("bob", l.writeFile("alice-bob-certs/bob-der.toml", der, 0o644))

	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	for _, sa := range l.sas("alice") {
		if sa.State == "ESTABLISHED" && (sa.LocalID != "172.16.98.231" || sa.RemoteID != "172.31.67.244") {
			t.Errorf("alice's IKE_SA %s: identities %q ↔ %q, want the addresses the certificates hold", sa.Name, sa.LocalID, sa.RemoteID)
		}
		// libipsec fakes NAT by making the peer look NATed (nat-remote);
		// nat-local stays unset without a real NAT (compare TestNATTraversal).
		if sa.NATLocal {
			t.Errorf("alice's IKE_SA %s: nat-local set on a flat segment", sa.Name)
		}
	}
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)

	// The key went over VICI only: no file in the lab holds it.
	key, err := os.ReadFile(l.example("alice-bob-certs/alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		b, _ := os.ReadFile(h.Log)
		if strings.Contains(string(b), strings.TrimSpace(string(key))[30:60]) {
			t.Errorf("%s's charon log holds alice's private key", h.Name)
		}
	}
}

// A Bob whose certificate comes from another CA: Alice refuses it, and
// initiate says why. Bob here is a peer swanmgr does not manage (it would
// refuse his policy: his certificate is not signed by the CA it names):
// he trusts the lab CA, so it is Alice's charon that rejects him and her
// initiate that must explain it.
func TestCertificateFromAnotherCA(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	other, err := lab.IssueCerts(filepath.Join(t.TempDir(), "other"), lab.CertOptions{
		CAName: "Some other CA", Hosts: []lab.CertHost{{Name: "bob", Addr: l.Host("bob").Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := l.client("bob")
	if _, err := bob.LoadKey(ctx, "any", read(other.Keys["bob"])); err != nil {
		t.Fatal(err)
	}
	conn := govici.NewMessage()
	conn.Set("version", "2")
	conn.Set("local_addrs", []string{"172.31.67.244"})
	conn.Set("remote_addrs", []string{"172.16.98.231"})
	conn.Set("proposals", []string{"aes256gcm16-prfsha384-x25519"})
	conn.Set("local", mustMsg(map[string]any{"auth": "pubkey", "id": "172.31.67.244", "certs": []string{string(read(other.Certs["bob"]))}}))
	conn.Set("remote", mustMsg(map[string]any{"auth": "pubkey", "id": "172.16.98.231", "cacerts": []string{string(read(l.example("alice-bob-certs/ca.pem")))}}))
	conn.Set("children", mustMsg(map[string]any{"irc": mustMsg(map[string]any{
		"local_ts": []string{"dynamic[tcp/6667]"}, "remote_ts": []string{"dynamic[tcp]"},
		"mode": "tunnel", "esp_proposals": []string{"aes256gcm16"},
	})}))
	if err := bob.LoadConn(ctx, "foreign-bob", conn); err != nil {
		t.Fatal(err)
	}

	l.mustApply("alice", l.example("alice-bob-certs/alice.toml"))
	r := l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob", "--negotiation-timeout", "10s")
	if r.code == 0 {
		t.Fatalf("initiate with a Bob from another CA succeeded:\n%s", r)
	}
	t.Logf("initiate:\n%s", r)
	for _, want := range []string{
		`rule "Abczz with Bob" (sm-abczz-with-bob-1): the peer's certificate is not signed by a CA you trust`,
		`no issuer certificate found for "O=swanmgr lab, CN=bob"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("initiate's errors lack %q:\n%s", want, r)
		}
	}
	// The log shows why: Bob's certificate leads to an issuer Alice does
	// not know.
	if !strings.Contains(r.stdout, `issuer is "O=swanmgr lab, CN=Some other CA"`) && !strings.Contains(r.stdout, `no issuer certificate found for "O=swanmgr lab, CN=bob"`) {
		t.Errorf("initiate's log does not name the unknown issuer:\n%s", r.stdout)
	}
	if n := len(installed(l.sas("alice"))); n != 0 {
		t.Errorf("alice has %d CHILD_SAs with a Bob she cannot trust", n)
	}
}
