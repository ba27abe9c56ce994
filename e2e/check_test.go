package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// checkPredictsLab: `swanmgr check` finds a problem between Alice's
// example and a variant of Bob's, and the same two files loaded into real
// charon daemons fail for that reason (the check predicts the lab).
func checkPredictsLab(t *testing.T, bobText string, wantCheck []string, wantInitiate string) {
	t.Helper()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	bob := l.writeFile("alice-bob/bob-variant.toml", bobText, 0o644)
	alice := l.example("alice-bob/alice.toml")

	r := run("swanmgr", "check", alice, bob)
	if r.code != 1 {
		t.Fatalf("check: want exit 1; got %s", r)
	}
	for _, w := range wantCheck {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("check output lacks %q:\n%s", w, r)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "lab-only") {
		t.Fatal("check printed a key")
	}

	l.mustApply("bob", bob)
	l.mustApply("alice", alice)
	r = l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob")
	if r.code != 1 || !strings.Contains(r.stderr, wantInitiate) {
		t.Fatalf("initiate in the lab: want exit 1 and %q; got %s", wantInitiate, r)
	}
	t.Logf("the lab said:\n%s", r.stderr)
}

func bobExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../examples/alice-bob/bob.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The article's troubleshooting case: Bob copies Alice's filters
// literally. With "any" source port charon does not refuse: it narrows
// the SA to port 6667 on both ends, which carries none of the traffic;
// initiate reports that with the mirror message.
func TestCheckReversedPortsPredictsLab(t *testing.T) {
	t.Parallel()
	literal := strings.NewReplacer(
		`source = "172.16.98.231"`, `source = "me"`,
		`destination = "me"`, `destination = "172.16.98.231"`,
	).Replace(bobExample(t))
	literal = literal[:strings.LastIndex(literal, "  # Bob connects")] + literal[strings.Index(literal, "[[filter_action]]"):]
	checkPredictsLab(t, literal,
		[]string{"alice.toml:15 ↔ ", "bob-variant.toml:16: reversed ports", "narrows the SA to the intersection (with these two filters 172.16.98.231/32[tcp/6667] === 172.31.67.244/32[tcp/6667]"},
		"the peer's filters do not mirror yours: check for reversed addresses or ports")
}

func TestCheckDifferentPSKPredictsLab(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wrong := dir + "/wrong.psk"
	if err := os.WriteFile(wrong, []byte("lab-only: a key Alice does not have 0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkPredictsLab(t, strings.Replace(bobExample(t), `"alice-bob.psk"`, `"`+wrong+`"`, 1),
		[]string{"preshared keys differ", "AUTHENTICATION_FAILED"},
		"authentication failed: preshared keys or certificates differ")
}

func TestCheckNoCommonESPPredictsLab(t *testing.T) {
	t.Parallel()
	checkPredictsLab(t, strings.Replace(bobExample(t), "security = \"high\"\npfs = true", "security = \"custom\"\nesp_encryption = [\"aes256\"]\nesp_integrity = [\"sha256\"]\npfs_group = \"x25519\"", 1),
		[]string{"no common ESP proposal", "NO_PROPOSAL_CHOSEN"},
		"no common security method")
}

// A clean pair: check agrees, and the lab establishes every SA and
// carries traffic encrypted.
func TestCheckCleanPairEstablishes(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice, bob := l.example("alice-bob/alice.toml"), l.example("alice-bob/bob.toml")
	r := run("swanmgr", "check", "--ipsec-backend", "libipsec", alice, bob)
	if r.code != 0 || !strings.Contains(r.stdout, "check: the endpoints agree") || !strings.Contains(r.stdout, "3 of 3 filters") {
		t.Fatalf("check of the examples: %s", r)
	}
	l.mustApply("alice", alice)
	l.mustApply("bob", bob)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	r = l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob")
	if r.code != 0 {
		t.Fatalf("initiate after a clean check: %s", r)
	}
	l.sendEncrypted("alice", "bob", 6667)
}

// Usage: fewer than two files is exit 2.
func TestCheckUsage(t *testing.T) {
	if r := run("swanmgr", "check", "../examples/alice-bob/alice.toml"); r.code != 2 {
		t.Fatalf("check with one file: want exit 2; got %s", r)
	}
}

// The IKEv2 PFS subtlety: with PFS on one end only, the first SA comes up
// (its keys come from the IKE_SA), and only the first rekey fails. check
// reports it before anything is loaded; the lab shows it at the rekey.
func TestCheckPFSMismatchShowsAtRekey(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	bob := l.writeFile("alice-bob/bob-nopfs.toml", strings.Replace(bobExample(t), "pfs = true\n", "", 1), 0o644)
	alice := l.example("alice-bob/alice.toml")
	r := run("swanmgr", "check", alice, bob)
	if r.code != 1 || !strings.Contains(r.stderr, "session key PFS differs") || !strings.Contains(r.stderr, "first rekey") {
		t.Fatalf("check: want the PFS problem; got %s", r)
	}
	l.mustApply("bob", bob)
	l.mustApply("alice", alice)
	// The first SA comes up all the same.
	l.waitInstalled("alice", "sm-abczz-with-bob-1")
	_, off := l.logSince("alice", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := l.Host("alice").Swanctl(ctx, "--rekey", "--child", "sm-abczz-with-bob-1").CombinedOutput(); err != nil {
		t.Fatalf("swanctl --rekey: %v\n%s", err, out)
	}
	eventually(t, 15*time.Second, func() (bool, string) {
		logged, _ := l.logSince("alice", off)
		return strings.Contains(logged, "received NO_PROPOSAL_CHOSEN notify") && strings.Contains(logged, "CHILD_SA rekeying failed"), "alice's log after the rekey:\n" + logged
	})
	logged, _ := l.logSince("alice", off)
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, "NO_PROPOSAL_CHOSEN") || strings.Contains(line, "rekey") {
			t.Log(line)
		}
	}
}
