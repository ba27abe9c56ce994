package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// newNATLab is newLab with the NAT topology: alice behind a masquerading
// router, bob outside.
func newNATLab(t *testing.T) *testLab {
	t.Helper()
	l, dir := upLab(t, lab.Options{Backend: lab.Libipsec, Hosts: []string{"alice", "bob"}, Topology: lab.TopologyNAT})
	tl := &testLab{Lab: l, t: t, stateDir: filepath.Join(dir, "state"), examples: filepath.Join(dir, "policies")}
	return tl
}

// natPolicy is one side of "encrypt TCP 6667 from Alice to Bob" with
// certificates. Bob's side names the router as the tunnel endpoint (the
// only address of Alice he can reach) and Alice's private address in the
// filter and as peer_id: behind NAT, addresses are not identities.
const natPolicy = `assign = "P"
[endpoint]
name = "%s"
addresses = ["%s"]
[[filter_list]]
name = "Abczz"
  [[filter_list.filter]]
  source = "%s"
  destination = "%s"
  protocol = "tcp"
  destination_port = 6667
[[filter_action]]
name = "Encrypt"
action = "negotiate"
security = "high"
pfs = true
[[policy]]
name = "P"
  [[policy.rule]]
  name = "Abczz"
  filter_list = "Abczz"
  filter_action = "Encrypt"
  %s
  authentication = [ { method = "certificate", ca = "certs/ca.pem", certificate = "certs/%s.pem", private_key = "certs/%s.key"%s } ]
`

// Alice behind a masquerading router: IKE moves to UDP 4500, ESP is
// UDP-encapsulated, traffic flows, and each side sees the NAT where it is.
func TestNATTraversal(t *testing.T) {
	t.Parallel()
	l := newNATLab(t)
	alice, bob, router := l.Host("alice"), l.Host("bob"), l.Router
	if _, err := lab.IssueCerts(filepath.Join(l.examples, "certs"), lab.CertOptions{Hosts: l.CertHosts()}); err != nil {
		t.Fatal(err)
	}
	alicePol := l.writeFile("alice.toml", fmt.Sprintf(natPolicy, "Alicepc", alice.Addr, "me", bob.Addr, "", "alice", "alice", ""), 0o644)
	bobPol := l.writeFile("bob.toml", fmt.Sprintf(natPolicy, "Bobslap", bob.Addr, alice.Addr, "me",
		fmt.Sprintf("tunnel_endpoint = %q", router.Outside), "bob", "bob", fmt.Sprintf(", peer_id = %q", alice.Addr)), 0o644)

	// Bob cannot start the SA (the router forwards nothing unasked): stop
	// the attempt his start action makes, so that only Alice's counts.
	l.mustApply("bob", bobPol)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sa := range l.sas("bob") {
		if err := l.client("bob").Terminate(ctx, vici.TerminateRequest{IKEID: sa.UniqueID, Force: true, Timeout: time.Second}, nil); err != nil {
			t.Logf("terminate bob's attempt #%d: %v", sa.UniqueID, err)
		}
	}
	capture, err := bob.StartCapture(ctx, fmt.Sprintf("host %s or host %s", router.Outside, alice.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Stop()
	l.mustApply("alice", alicePol)
	l.waitInstalled("alice", "sm-abczz-1")
	l.waitInstalled("bob", "sm-abczz-1")

	for _, sa := range l.sas("alice") {
		t.Logf("alice: IKE_SA %s #%d %s[%d] (%s) ... %s[%d] (%s), nat-local=%v nat-remote=%v nat-fake=%v nat-any=%v",
			sa.Name, sa.UniqueID, sa.LocalHost, sa.LocalPort, sa.LocalID, sa.RemoteHost, sa.RemotePort, sa.RemoteID, sa.NATLocal, sa.NATRemote, sa.NATFake, sa.NATAny)
		// nat-local is what libipsec's fake never sets (it only makes the
		// peer look NATed): here it comes from real NAT detection.
		if !sa.NATLocal {
			t.Errorf("alice's IKE_SA #%d: nat-local not set; alice is behind the router's NAT", sa.UniqueID)
		}
		if sa.LocalHost != alice.Addr.String() || sa.RemoteHost != bob.Addr.String() || sa.RemotePort != 4500 {
			t.Errorf("alice's IKE_SA #%d: %s ... %s[%d], want %s ... %s[4500]", sa.UniqueID, sa.LocalHost, sa.RemoteHost, sa.RemotePort, alice.Addr, bob.Addr)
		}
		for _, ch := range sa.Children {
			if !ch.Encap {
				t.Errorf("alice's CHILD_SA %s: not UDP-encapsulated", ch.Name)
			}
		}
	}
	for _, sa := range l.sas("bob") {
		t.Logf("bob: IKE_SA %s #%d %s[%d] (%s) ... %s[%d] (%s), nat-local=%v nat-remote=%v nat-fake=%v nat-any=%v",
			sa.Name, sa.UniqueID, sa.LocalHost, sa.LocalPort, sa.LocalID, sa.RemoteHost, sa.RemotePort, sa.RemoteID, sa.NATLocal, sa.NATRemote, sa.NATFake, sa.NATAny)
		// Bob sees Alice at the router's address: the NAT is real, and it is
		// on Alice's side.
		if sa.RemoteHost != router.Outside.String() {
			t.Errorf("bob's IKE_SA #%d: remote host %s, want the router's %s", sa.UniqueID, sa.RemoteHost, router.Outside)
		}
		if sa.RemoteID != alice.Addr.String() {
			t.Errorf("bob's IKE_SA #%d: remote identity %q, want alice's %s (from her certificate)", sa.UniqueID, sa.RemoteID, alice.Addr)
		}
		if !sa.NATRemote || sa.NATLocal {
			t.Errorf("bob's IKE_SA #%d: nat-remote=%v nat-local=%v, want the remote side behind NAT and not the local", sa.UniqueID, sa.NATRemote, sa.NATLocal)
		}
	}

	// swanmgr status shows the NAT on the right side: the NAT column of
	// alice's IKE_SA has "local" in it ("both": libipsec's fake adds
	// remote), bob's says "remote" only.
	for _, c := range []struct{ host, want string }{
		{"alice", fmt.Sprintf(`(?m)^\s+%s\[4500\]\s+%s\s+pubkey\s+IKEv2\s+(local|both)\s+ESTABLISHED`, regexp.QuoteMeta(bob.Addr.String()), regexp.QuoteMeta(bob.Addr.String()))},
		{"bob", fmt.Sprintf(`(?m)^\s+%s\[4500\]\s+%s\s+pubkey\s+IKEv2\s+remote\s+ESTABLISHED`, regexp.QuoteMeta(router.Outside.String()), regexp.QuoteMeta(alice.Addr.String()))},
	} {
		r := l.swanmgr(c.host, "status")
		if r.code != 0 || !regexp.MustCompile(c.want).MatchString(r.stdout) {
			t.Errorf("swanmgr status on %s: want an IKE SA line matching %s; got %s", c.host, c.want, r)
		}
	}

	msg := fmt.Sprintf("Abczz secret through the NAT %d", time.Now().UnixNano())
	got, err := lab.Send(ctx, alice, bob, "tcp", 6667, []byte(msg))
	if err != nil || string(got) != msg {
		t.Fatalf("alice → bob tcp/6667 through the NAT: got %q, %v", got, err)
	}
	want := fmt.Sprintf("%s.4500 > %s.4500: UDP-encap: ESP", router.Outside, bob.Addr)
	if err := capture.WaitFor(ctx, func(s string) bool { return strings.Contains(s, want) }); err != nil {
		t.Fatalf("no %q on bob's wire: %v\n%s", want, err, strings.Join(capture.Lines(), "\n"))
	}
	lines := capture.Stop()
	for _, line := range lines {
		if strings.Contains(line, msg[:20]) {
			t.Errorf("the payload crossed bob's wire in clear: %q", line)
		}
		if strings.Contains(line, alice.Addr.String()) {
			t.Errorf("alice's private address %s on bob's wire: %q", alice.Addr, line)
		}
	}
	var headers []string
	for _, line := range lines {
		if strings.Contains(line, " IP ") {
			headers = append(headers, line)
		}
	}
	t.Logf("bob's wire:\n%s", strings.Join(headers, "\n"))
	if ch := installed(l.sas("bob"))["sm-abczz-1"]; ch.BytesIn == 0 {
		t.Errorf("bob's CHILD_SA counted no bytes in")
	}
}
