package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// Windows filter semantics the first model got wrong (issue 17), each
// against real charon.

// twoRules is one side of two negotiate rules to the same peer: Abczz
// (TCP 6667, high security with PFS) and Syslog (TCP 6514, custom
// AES-128-GCM, its own lifetime). {me}, {peer} and {name} are filled in.
const twoRules = `assign = "{name}'s IPSec"

[endpoint]
name = "{name}"
addresses = ["{me}"]

[[filter_list]]
name = "Abczz"
  [[filter_list.filter]]
  source = "me"
  destination = "{peer}"
  protocol = "tcp"
  {abczz_port} = 6667

[[filter_list]]
name = "Syslog"
  [[filter_list.filter]]
  source = "me"
  destination = "{peer}"
  protocol = "tcp"
  {syslog_port} = 6514

[[filter_action]]
name = "Encrypt Abczz"
action = "negotiate"
security = "high"
pfs = true

[[filter_action]]
name = "Syslog AES-128"
action = "negotiate"
security = "custom"
esp_encryption = ["aes128gcm16"]
rekey_seconds = 1800

[[policy]]
name = "{name}'s IPSec"
  [[policy.rule]]
  name = "Abczz"
  filter_list = "Abczz"
  filter_action = "Encrypt Abczz"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
  [[policy.rule]]
  name = "Syslog"
  filter_list = "Syslog"
  filter_action = "Syslog AES-128"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
`

func (l *testLab) twoRulesFile(host, peer string, initiator bool) string {
	l.t.Helper()
	port := "destination_port"
	if !initiator {
		port = "source_port"
	}
	text := strings.NewReplacer("{name}", host, "{me}", l.Host(host).Addr.String(), "{peer}", l.Host(peer).Addr.String(),
		"{abczz_port}", port, "{syslog_port}", port).Replace(twoRules)
	return l.writeFile("alice-bob/"+host+"-two-rules.toml", text, 0o644)
}

// Item 1: two negotiate rules naming the same peer. charon selects one
// peer config per peer and looks a CHILD_SA up only among that config's
// children, so with one connection per rule the second rule's CHILD_SA
// went into the first rule's IKE_SA and the responder answered
// TS_UNACCEPTABLE. Now both rules' SAs come up in one IKE_SA, each with
// its own rule's proposals, both carry their traffic as ESP only, and
// status, initiate and terminate speak of each rule.
func TestTwoRulesOnePeer(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice := l.twoRulesFile("alice", "bob", true)
	bob := l.twoRulesFile("bob", "alice", false)
	if r := run("swanmgr", "check", alice, bob); r.code != 0 || !strings.Contains(r.stdout, `rule "Syslog"`) {
		t.Fatalf("check of the two files: %s", r)
	}
	l.mustApply("bob", bob)
	l.mustApply("alice", alice)
	kids := l.waitInstalled("alice", "sm-abczz-1", "sm-syslog-1")
	l.waitInstalled("bob", "sm-abczz-1", "sm-syslog-1")

	var ikes []uint64
	for _, sa := range l.sas("alice") {
		if sa.State == "ESTABLISHED" {
			ikes = append(ikes, sa.UniqueID)
		}
		if sa.Name != "sm-abczz" {
			t.Errorf("IKE_SA #%d of connection %q, want sm-abczz (the one connection to bob)", sa.UniqueID, sa.Name)
		}
	}
	if len(ikes) != 1 {
		t.Errorf("alice has %d established IKE_SAs with bob, want 1: %v", len(ikes), ikes)
	}
	for name, want := range map[string]int{"sm-abczz-1": 256, "sm-syslog-1": 128} {
		ch := kids[name]
		if ch.EncrAlg != "AES_GCM_16" || ch.EncrKeysize != want {
			t.Errorf("%s: %s-%d, want AES_GCM_16-%d (its own rule's proposal)", name, ch.EncrAlg, ch.EncrKeysize, want)
		}
	}
	if ch := kids["sm-syslog-1"]; ch.RekeyTime <= 0 || ch.RekeyTime > 1800*time.Second {
		t.Errorf("sm-syslog-1 rekeys in %v, want at most Syslog's rekey_seconds (1800 s)", ch.RekeyTime)
	}
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("alice", "bob", 6514)

	st := l.statusJSON("alice", "--rule", "Syslog")
	if len(st.SAs) != 1 || st.SAs[0].Child != "sm-syslog-1" || st.SAs[0].Rule == nil || *st.SAs[0].Rule != "Syslog" ||
		st.SAs[0].FilterList == nil || *st.SAs[0].FilterList != "Syslog" {
		t.Errorf("status --rule Syslog: want one row, child sm-syslog-1 of rule and filter list \"Syslog\"; got %+v", st.SAs)
	}
	st = l.statusJSON("alice")
	rules := map[string]string{}
	for _, r := range st.SAs {
		if r.Rule != nil {
			rules[r.Child] = *r.Rule
		}
	}
	if rules["sm-abczz-1"] != "Abczz" || rules["sm-syslog-1"] != "Syslog" {
		t.Errorf("status rows by child: %v, want sm-abczz-1 → Abczz, sm-syslog-1 → Syslog", rules)
	}
	if st.Policy == nil || strings.Join(st.Policy.Rules, ",") != "Abczz,Syslog" {
		t.Errorf("status policy rules: %+v, want Abczz and Syslog", st.Policy)
	}

	r := l.swanmgr("alice", "initiate", "--rule", "Syslog", "-q")
	if r.code != 0 || !strings.Contains(r.stdout, `rule "Syslog": sm-syslog-1`) || strings.Contains(r.stdout, "sm-abczz-1") {
		t.Errorf("initiate --rule Syslog: want only Syslog's child, up; got %s", r)
	}
	r = l.swanmgr("alice", "terminate", "--rule", "Syslog")
	if r.code != 0 || !strings.Contains(r.stdout, "closed CHILD_SA sm-syslog-1") {
		t.Fatalf("terminate --rule Syslog: %s", r)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		got := installed(l.sas("alice"))
		_, syslog := got["sm-syslog-1"]
		_, abczz := got["sm-abczz-1"]
		return !syslog && abczz, "after terminate --rule Syslog, alice's installed CHILD_SAs: " + strings.Join(keys(got), ", ") + " (want sm-abczz-1 only)"
	})
	r = l.swanmgr("alice", "initiate", "--rule", "Syslog", "-q")
	if r.code != 0 || !strings.Contains(r.stdout, `rule "Syslog": sm-syslog-1 established`) {
		t.Fatalf("initiate --rule Syslog after terminate: %s", r)
	}
	l.sendEncrypted("alice", "bob", 6514)
}
