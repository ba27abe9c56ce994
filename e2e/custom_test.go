package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// The filter action of the alice-bob examples, which these tests replace.
const highAction = "security = \"high\"\npfs = true\n"

// withAction writes a copy of an alice-bob example whose filter action
// has the given settings instead of high security with PFS.
func (l *testLab) withAction(host, name, settings string) string {
	l.t.Helper()
	b, err := os.ReadFile(l.example("alice-bob/" + host + ".toml"))
	if err != nil {
		l.t.Fatal(err)
	}
	if !strings.Contains(string(b), highAction) {
		l.t.Fatalf("alice-bob/%s.toml no longer has %q", host, highAction)
	}
	return l.writeFile("alice-bob/"+name+".toml", strings.Replace(string(b), highAction, settings, 1), 0o644)
}

// actionOf validates a policy file and returns its first rule's action.
func actionOf(t *testing.T, path string) model.ResolvedAction {
	t.Helper()
	f, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return a.Rules[0].Action
}

const customCBC = `security = "custom"
esp_encryption = ["aes256"]
esp_integrity = ["sha256"]
pfs = true
pfs_group = "x25519"
rekey_seconds = 3600
rekey_kilobytes = 100000
`

// Custom security: AES-CBC-256 with HMAC-SHA-256 establishes and the
// CHILD_SAs carry exactly those algorithms; the first CHILD_SA has no key
// exchange of its own (IKEv2), and after a rekey the new one used the PFS
// group.
func TestCustomSecurityAndPFSRekey(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.withAction("alice", "alice-custom", customCBC))
	l.mustApply("bob", l.withAction("bob", "bob-custom", customCBC))
	kids := l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	// The CHILD_SA created with IKE_AUTH has no key exchange of its own
	// (IKEv2 takes its keys from the IKE_SA); those created afterwards on
	// the same IKE_SA with CREATE_CHILD_SA do one, with the PFS group.
	var first vici.ChildSA
	for name, ch := range kids {
		if ch.Protocol != "ESP" || ch.EncrAlg != "AES_CBC" || ch.EncrKeysize != 256 || ch.IntegAlg != "HMAC_SHA2_256_128" {
			t.Errorf("%s: %s %s-%d/%s, want ESP AES_CBC-256/HMAC_SHA2_256_128", name, ch.Protocol, ch.EncrAlg, ch.EncrKeysize, ch.IntegAlg)
		}
		switch ch.DHGroup {
		case "":
			first = ch
		case "CURVE_25519":
		default:
			t.Errorf("%s: DH group %q, want none (IKE_AUTH) or CURVE_25519", name, ch.DHGroup)
		}
		// rekey_seconds = 3600: charon rekeys at 3600 s minus up to 10% jitter.
		if ch.RekeyTime <= 0 || ch.RekeyTime > time.Hour {
			t.Errorf("%s: rekeys in %v, want at most rekey_seconds (1h)", name, ch.RekeyTime)
		}
		t.Logf("%s #%d: %s %s-%d/%s, DH group %q", name, ch.UniqueID, ch.Protocol, ch.EncrAlg, ch.EncrKeysize, ch.IntegAlg, ch.DHGroup)
	}
	if first.Name == "" {
		t.Fatalf("no CHILD_SA without a key exchange on alice: IKEv2 creates the first one with IKE_AUTH")
	}
	l.sendEncrypted("alice", "bob", 6667)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.client("alice").Rekey(ctx, vici.RekeyRequest{ChildID: first.UniqueID}); err != nil {
		t.Fatal(err)
	}
	var rekeyed vici.ChildSA
	eventually(t, 15*time.Second, func() (bool, string) {
		for _, sa := range l.sas("alice") {
			for _, ch := range sa.Children {
				if ch.Name == first.Name && ch.State == "INSTALLED" && ch.UniqueID > first.UniqueID {
					rekeyed = ch
					return true, ""
				}
			}
		}
		return false, "no new CHILD_SA for " + first.Name + " after the rekey"
	})
	if rekeyed.DHGroup != "CURVE_25519" {
		t.Errorf("the rekeyed CHILD_SA #%d has DH group %q, want CURVE_25519 (pfs_group x25519)", rekeyed.UniqueID, rekeyed.DHGroup)
	}
	if rekeyed.EncrAlg != "AES_CBC" || rekeyed.EncrKeysize != 256 || rekeyed.IntegAlg != "HMAC_SHA2_256_128" {
		t.Errorf("the rekeyed CHILD_SA: %s-%d/%s, want AES_CBC-256/HMAC_SHA2_256_128", rekeyed.EncrAlg, rekeyed.EncrKeysize, rekeyed.IntegAlg)
	}
	t.Logf("CHILD_SA %s: #%d without a key exchange, rekeyed to #%d with %s", first.Name, first.UniqueID, rekeyed.UniqueID, rekeyed.DHGroup)
	if first.Name == "sm-abczz-with-bob-1" {
		l.sendEncrypted("alice", "bob", 6667)
	}
}

// No common proposal: Alice custom AES-CBC, Bob high security (AES-GCM).
// The comparison predicts it, the CHILD_SA fails, initiate says so, and
// the responder's log names both sides' proposals (the initiator only gets
// NO_PROPOSAL_CHOSEN: the peer's proposals never reach it).
func TestNoCommonProposal(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice := l.withAction("alice", "alice-custom", customCBC)
	bob := l.example("alice-bob/bob.toml")
	m := render.CompareChildSecurity(render.ChildSecurityOf(actionOf(t, alice)), render.ChildSecurityOf(actionOf(t, bob)))
	if len(m) != 1 || !m[0].Immediate || !strings.Contains(m[0].Msg, "this side proposes esp aes256-sha256-x25519, the peer esp aes256gcm16-x25519") {
		t.Errorf("CompareChildSecurity: %v, want one immediate mismatch naming both proposals", m)
	}
	l.mustApply("bob", bob)
	_, off := l.logSince("bob", 0)
	l.mustApply("alice", alice)
	r := l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob")
	if r.code == 0 || !strings.Contains(r.stderr, "no common security method") || !strings.Contains(r.stderr, "you proposed IKE aes256gcm16") || !strings.Contains(r.stderr, "ESP aes256-sha256-x25519") {
		t.Fatalf("initiate without a common proposal: want \"no common security method\" and this side's proposals; got %s", r)
	}
	t.Logf("initiate:\n%s", r.stderr)
	var bobLog string
	eventually(t, 5*time.Second, func() (bool, string) {
		bobLog, _ = l.logSince("bob", off)
		return strings.Contains(bobLog, "configured proposals: ESP:AES_GCM_16_256"), "bob's log has no \"configured proposals\" line:\n" + lastLines(bobLog, 20)
	})
	for _, want := range []string{"received proposals: ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ", "configured proposals: ESP:AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ"} {
		if !strings.Contains(bobLog, want) {
			t.Errorf("bob's log lacks %q", want)
		}
	}
}

// A PFS mismatch (Alice PFS with x25519, Bob none) is invisible when the
// SA comes up and fails at the first rekeying: the comparison catches it
// beforehand.
func TestPFSMismatchFailsAtRekey(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice := l.example("alice-bob/alice.toml") // high, pfs = true (x25519)
	bob := l.withAction("bob", "bob-nopfs", "security = \"high\"\npfs = false\n")
	m := render.CompareChildSecurity(render.ChildSecurityOf(actionOf(t, alice)), render.ChildSecurityOf(actionOf(t, bob)))
	if len(m) != 1 || m[0].Immediate || !strings.Contains(m[0].Msg, "this side has PFS with x25519, the peer no PFS") {
		t.Errorf("CompareChildSecurity: %v, want one mismatch at rekeying", m)
	}
	l.mustApply("bob", bob)
	l.mustApply("alice", alice)
	// The CHILD_SA created with IKE_AUTH has no key exchange and comes up;
	// those created later on the same IKE_SA (CREATE_CHILD_SA, with a key
	// exchange) fail at once.
	var first vici.ChildSA
	eventually(t, 10*time.Second, func() (bool, string) {
		for _, ch := range installed(l.sas("alice")) {
			if ch.DHGroup == "" {
				first = ch
				return true, ""
			}
		}
		return false, "no CHILD_SA created with IKE_AUTH on alice"
	})
	// Wait until the other two children's attempts have been refused.
	eventually(t, 10*time.Second, func() (bool, string) {
		log, _ := l.logSince("alice", 0)
		n := strings.Count(log, "NO_PROPOSAL_CHOSEN")
		return n >= 2, fmt.Sprintf("alice's log shows %d refused CHILD_SAs, want 2:\n%s", n, lastLines(log, 20))
	})
	for name, ch := range installed(l.sas("alice")) {
		if ch.DHGroup != "" {
			t.Errorf("%s #%d installed with DH group %s although Bob has no PFS", name, ch.UniqueID, ch.DHGroup)
		}
	}
	if first.Name == "sm-abczz-with-bob-1" {
		l.sendEncrypted("alice", "bob", 6667) // the SA works: nothing tells of the mismatch yet
	}

	_, off := l.logSince("alice", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.client("alice").Rekey(ctx, vici.RekeyRequest{ChildID: first.UniqueID}); err != nil {
		t.Fatal(err)
	}
	var log string
	eventually(t, 10*time.Second, func() (bool, string) {
		log, _ = l.logSince("alice", off)
		return strings.Contains(log, "NO_PROPOSAL_CHOSEN"), "alice's log after the rekey:\n" + lastLines(log, 20)
	})
	t.Logf("alice's log after the rekey:\n%s", lastLines(log, 12))
	// The responder's log names both proposals of the rekeying.
	var bobLog string
	eventually(t, 5*time.Second, func() (bool, string) {
		bobLog, _ = l.logSince("bob", 0)
		return strings.Contains(bobLog, "received proposals: ESP:AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ"), "bob's log lacks the rekeying's received proposals:\n" + lastLines(bobLog, 20)
	})
	for _, line := range strings.Split(bobLog, "\n") {
		if strings.Contains(line, "proposal") && strings.Contains(line, "CREATE_CHILD_SA") || strings.Contains(line, "received proposals") || strings.Contains(line, "configured proposals") {
			t.Logf("bob: %s", line)
		}
	}
	for _, sa := range l.sas("alice") {
		for _, ch := range sa.Children {
			if ch.Name == first.Name && ch.UniqueID > first.UniqueID && ch.State == "INSTALLED" {
				t.Errorf("a new CHILD_SA #%d (%q) was installed despite the PFS mismatch", ch.UniqueID, ch.DHGroup)
			}
		}
	}
}
