package e2e

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// renderFile loads, validates and renders a policy file as apply does.
func renderFile(t *testing.T, path string, b render.Backend) *render.Result {
	t.Helper()
	f, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(a, render.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// 5. A policy charon rejects: the error names the rule and charon's
// message; the previous assignment is still loaded and carries traffic.
func TestRejectedPolicyKeepsPrevious(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	before := l.waitInstalled("alice", "sm-abczz-with-bob-1")

	// Validation keeps charon-refused settings out of policy files, so the
	// bad policy is made by hand: the next assignment (Bob and Eve) with
	// one setting charon does not know in Eve's connection.
	bad := renderFile(t, l.example("alice-bob-eve/alice.toml"), render.LibIPsec)
	for i := range bad.Conns {
		if bad.Conns[i].Name == "sm-syslog-with-eve" {
			bad.Conns[i].Body.Set("no_such_option", "yes")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := l.client("alice")
	e := l.engine("alice", client)
	_, err := e.Apply(ctx, bad, assign.Inputs{})
	var re *assign.RejectedError
	if !errors.As(err, &re) || !re.Restored {
		t.Fatalf("apply of a policy charon rejects: err = %v, want a RejectedError with the previous assignment restored", err)
	}
	if !strings.Contains(err.Error(), `rule "Syslog with Eve"`) || !strings.Contains(err.Error(), "no_such_option") {
		t.Fatalf("error %q does not name the rule and charon's message", err)
	}
	conns, err := client.Conns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(conns, ",") != "sm-abczz-with-bob" {
		t.Fatalf("after the rejected apply charon has %v, want the previous assignment only", conns)
	}
	if ids, _ := client.SharedIDs(ctx); strings.Join(ids, ",") != "ike-sm-abczz-with-bob" {
		t.Fatalf("after the rejected apply charon has secrets %v, want the previous one only", ids)
	}
	after := installed(l.sas("alice"))
	if after["sm-abczz-with-bob-1"].UniqueID != before["sm-abczz-with-bob-1"].UniqueID {
		t.Fatal("the rejected apply disturbed the previous assignment's SA")
	}
	l.sendEncrypted("alice", "bob", 6667)

	// The same through the command line: the message reaches the operator.
	r := l.swanmgr("alice", "plan", "-f", l.example("alice-bob/alice.toml"), "--exit-code")
	if r.code != 0 {
		t.Fatalf("plan after a rejected apply shows changes: %s", r)
	}
}

const kernelPolicy = `
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Abczz admin port"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 7002

[[filter_list]]
name = "Monitoring"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 7003

[[filter_list]]
name = "All of Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"

[[filter_action]]
name = "Block"
action = "block"

[[filter_action]]
name = "Permit"
action = "permit"

[[filter_action]]
name = "Require security"
action = "negotiate"

[[policy]]
name = "Alice's gateway"
  [[policy.rule]]
  filter_list = "Abczz admin port"
  filter_action = "Block"
%s`

const negotiateAll = `
  [[policy.rule]]
  filter_list = "Monitoring"
  filter_action = "Permit"
  [[policy.rule]]
  filter_list = "All of Bob"
  filter_action = "Require security"
  authentication = [ { method = "psk", secret_file = "alice-bob/alice-bob.psk" } ]
`

// connects reports whether a TCP connection from alice to bob's port
// succeeds, with a listener on bob.
func connects(t *testing.T, l *testLab, port int) bool {
	t.Helper()
	bob := l.Host("bob")
	ln, err := bob.Listen("tcp4", netip.AddrPortFrom(bob.Addr, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := l.Host("alice").Dial(ctx, "tcp4", netip.AddrPortFrom(bob.Addr, uint16(port)).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// 6. Block and permit on the kernel backend: a block filter drops its
// traffic while other traffic to the same host passes; a permit filter
// overrides a broader negotiate filter (most specific wins).
func TestBlockAndPermit(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice", "bob")
	blockOnly := l.writeFile("kernel-block.toml", strings.Replace(kernelPolicy, "%s", "", 1), 0o644)
	l.mustApply("alice", blockOnly)
	if connects(t, l, 7002) {
		t.Fatal("tcp/7002 to Bob connects although a block rule covers it")
	}
	if !connects(t, l, 7003) || !connects(t, l, 7004) {
		t.Fatal("traffic to Bob's other ports is blocked too; only tcp/7002 should be")
	}

	withNegotiate := l.writeFile("kernel-negotiate.toml", strings.Replace(kernelPolicy, "%s", negotiateAll, 1), 0o644)
	r := l.mustApply("alice", withNegotiate)
	if !strings.Contains(r.stdout, "= Abczz admin port") {
		t.Fatalf("adding rules changed the block rule: %s", r)
	}
	if connects(t, l, 7002) {
		t.Fatal("tcp/7002 connects; the block filter is more specific than the negotiate filter and must win")
	}
	if !connects(t, l, 7003) {
		t.Fatal("tcp/7003 does not connect in clear; the permit filter is more specific than the negotiate filter and must win")
	}
	if connects(t, l, 7004) {
		t.Fatal("tcp/7004 connected in clear although 'All of Bob' requires security (Bob has no policy)")
	}
	// The negotiate rule's trap asked charon to negotiate with Bob.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.client("alice").ListSAs(ctx, vici.SAFilter{}); err != nil {
		t.Fatal(err)
	}
}
