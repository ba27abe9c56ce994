package netfilter_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/netfilter"
)

// derive validates a policy (written into a temporary folder with a key
// file beside it) and derives its guard.
func derive(t *testing.T, policy string, b guard.Backend) *guard.Ruleset {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte("a-preshared-key-of-some-length-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p.toml")
	f, err := model.Parse(path, []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, probs := guard.Derive(a, b)
	if probs != nil {
		t.Fatal(probs)
	}
	return rs
}

// A hub's two sites: site A (10.77.1.0/24) through a tunnel, site B
// (10.77.2.0/24) behind it. hubPolicy(false) is a site gateway's (its LAN,
// site B, to site A); hubPolicy(true) a hub's between the two sites, each
// through its own tunnel.
func hubPolicy(hub bool) string {
	p := `
[endpoint]
addresses = ["192.0.2.1"]

[[filter_list]]
name = "Site B to site A"
  [[filter_list.filter]]
  source = "10.77.2.0/24"
  destination = "10.77.1.0/24"
[[filter_list]]
name = "Site A to site B"
  [[filter_list.filter]]
  source = "10.77.1.0/24"
  destination = "10.77.2.0/24"

[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Site A"
  filter_list = "Site B to site A"
  filter_action = "Encrypt"
  tunnel_endpoint = "192.0.2.10"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`
	if hub {
		p += `
  [[policy.rule]]
  name = "Site B"
  filter_list = "Site A to site B"
  filter_action = "Encrypt"
  tunnel_endpoint = "192.0.2.20"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`
	}
	return p
}

// send says whether a UDP datagram of msg from namespace from arrives at
// addr in namespace to within d (it is sent again until then: ARP, links
// coming up); no ping needed.
func send(from, to, addr string, d time.Duration, msg string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	got, err := lab.Send(ctx, &lab.Host{Name: from, Netns: from}, &lab.Host{Name: to, Netns: to, Addr: netip.MustParseAddr(addr)}, "udp", 7007, []byte(msg))
	return err == nil && string(got) == msg
}

// hubLab makes three namespaces: site A (10.77.1.2) behind the hub's
// ipsec0, site B (10.77.2.2, and 10.77.3.2 that no rule covers) behind its
// eth-b; the hub forwards between them.
func hubLab(t *testing.T) (a, hub, b string) {
	t.Helper()
	a, hub, b = netns(t), netns(t), netns(t)
	in := func(ns string, args ...string) { t.Helper(); inNS(t, ns, args...) }
	// Interfaces are made inside the namespaces: nothing is left in the
	// host's when a namespace goes.
	in(hub, "ip", "link", "add", "ipsec0", "type", "veth", "peer", "name", "a0", "netns", a)
	in(hub, "ip", "link", "add", "eth-b", "type", "veth", "peer", "name", "b0", "netns", b)
	in(hub, "ip", "addr", "add", "10.77.1.1/24", "dev", "ipsec0")
	in(hub, "ip", "addr", "add", "10.77.2.1/24", "dev", "eth-b")
	in(a, "ip", "addr", "add", "10.77.1.2/24", "dev", "a0")
	in(b, "ip", "addr", "add", "10.77.2.2/24", "dev", "b0")
	in(b, "ip", "addr", "add", "10.77.3.2/24", "dev", "b0") // no rule covers it
	in(hub, "ip", "addr", "add", "10.77.3.1/24", "dev", "eth-b")
	for _, ns := range []string{a, hub, b} {
		in(ns, "ip", "link", "set", "lo", "up")
	}
	in(hub, "ip", "link", "set", "ipsec0", "up")
	in(hub, "ip", "link", "set", "eth-b", "up")
	in(a, "ip", "link", "set", "a0", "up")
	in(b, "ip", "link", "set", "b0", "up")
	in(a, "ip", "route", "add", "default", "via", "10.77.1.1")
	in(b, "ip", "route", "add", "default", "via", "10.77.2.1")
	in(hub, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

	return a, hub, b
}

// Forwarded traffic through real netfilter, libipsec's way of telling
// protected packets (they pass its TUN device, ipsec0): here the hub's
// leg to site A is a veth named ipsec0 (the tunnel that is up) and its leg
// to site B a plain one (the tunnel that is down: libipsec's route is gone
// and the kernel's sends in clear). A gateway's guard lets site A's
// traffic to its LAN and back; a hub's drops it both ways, because each
// way one leg is in clear. Before the guard checked forwarded packets by
// direction, either protected leg was enough and the hub sent on in clear
// what arrived through one tunnel (both arrived).
func TestIntegrationForwardedByDirection(t *testing.T) {
	a, hub, b := hubLab(t)
	answered := func(from, to, addr string) bool { return send(from, to, addr, 10*time.Second, "in clear") }
	arrives := func(from, to, addr string) bool { return send(from, to, addr, 2*time.Second, "in clear") }
	if !answered(a, b, "10.77.2.2") || !answered(b, a, "10.77.1.2") {
		t.Fatal("the hub forwards nothing without a guard")
	}

	tab, err := netfilter.Open("/run/netns/" + hub)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	gw := derive(t, hubPolicy(false), guard.LibIPsec)
	if _, err := tab.Install(ctx, nil, gw); err != nil {
		t.Fatal(err)
	}
	if !answered(a, b, "10.77.2.2") || !answered(b, a, "10.77.1.2") {
		t.Fatalf("a gateway's guard stops site A's traffic to its LAN:\n%s", nft(t, hub, "list", "table", "inet", "swanmgr"))
	}
	if cs, err := tab.Counters(ctx); err != nil || cs["r-site-a"] != 0 {
		t.Errorf("gateway: drops %v, %v; want none", cs, err)
	}

	hb := derive(t, hubPolicy(true), guard.LibIPsec)
	if _, err := tab.Install(ctx, gw, hb); err != nil {
		t.Fatal(err)
	}
	if !answered(a, b, "10.77.3.2") {
		t.Fatal("the hub's guard stops traffic no rule covers")
	}
	if arrives(a, b, "10.77.2.2") {
		t.Error("the hub sent on to site B in clear what arrived through site A's tunnel")
	}
	if arrives(b, a, "10.77.1.2") {
		t.Error("the hub sent into site A's tunnel what arrived from site B in clear")
	}
	cs, err := tab.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := cs["r-site-a"] + cs["r-site-b"]; n < 2 {
		t.Errorf("drops counted %v; want at least the two datagrams", cs)
	}
	if listing := nft(t, hub, "list", "table", "inet", "swanmgr"); !strings.Contains(listing, "jump fwd-i") {
		t.Errorf("hub table lacks the forward passes:\n%s", listing)
	}

	// The hub's rule to site A narrowed to UDP 7007: site B's clear
	// datagrams to it match that rule going out (they would leave
	// protected) and the rule to site B, less specific, coming in
	// (they did not arrive protected). The kernel's fwd policy would
	// drop them; the guard used to let the more specific entry decide.
	narrow := derive(t, strings.Replace(hubPolicy(true), `  destination = "10.77.1.0/24"`, `  destination = "10.77.1.0/24"
  protocol = "udp"
  destination_port = 7007`, 1), guard.LibIPsec)
	if _, err := tab.Install(ctx, hb, narrow); err != nil {
		t.Fatal(err)
	}
	if arrives(b, a, "10.77.1.2") {
		t.Error("the hub put into site A's tunnel what arrived from site B in clear, by a rule more specific than the one to site B")
	}
	if !answered(a, b, "10.77.3.2") {
		t.Fatal("the narrowed hub's guard stops traffic no rule covers")
	}
	hb = narrow
	if _, err := tab.Install(ctx, hb, nil); err != nil {
		t.Fatal(err)
	}
	if !answered(a, b, "10.77.2.2") {
		t.Error("traffic does not flow again once the guard is gone")
	}
}

// A forwarded datagram too large for one packet, of a port-restricted
// negotiate rule: its fragments after the first carry no ports, so no
// entry of the rule matched them, and while the first was dropped the
// others crossed the hub in clear (tcpdump on site A saw the payload).
// The guard now has conntrack reassemble forwarded fragments first: the
// whole datagram is dropped, or, for a gateway, passed whole.
func TestIntegrationForwardedFragments(t *testing.T) {
	a, hub, b := hubLab(t)
	// Site B's datagrams to site A's UDP 7007, in both rules (the hub's
	// rule to site B sees them coming back from B).
	ports := func(p string) string {
		p = strings.ReplaceAll(p, `  destination = "10.77.1.0/24"`, `  destination = "10.77.1.0/24"
  protocol = "udp"
  destination_port = 7007`)
		return strings.ReplaceAll(p, `  destination = "10.77.2.0/24"`, `  destination = "10.77.2.0/24"
  protocol = "udp"
  source_port = 7007`)
	}
	big := strings.Repeat("FRAGMENT-PAYLOAD-", 240) // 4,080 bytes: three fragments
	if !send(b, a, "10.77.1.2", 10*time.Second, big) {
		t.Fatal("the hub forwards no large datagram without a guard")
	}
	tab, err := netfilter.Open("/run/netns/" + hub)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	gw := derive(t, ports(hubPolicy(false)), guard.LibIPsec)
	if _, err := tab.Install(ctx, nil, gw); err != nil {
		t.Fatal(err)
	}
	if !send(b, a, "10.77.1.2", 10*time.Second, big) {
		t.Fatalf("a gateway's guard stops its LAN's large datagrams into the tunnel:\n%s", nft(t, hub, "list", "table", "inet", "swanmgr"))
	}
	hb := derive(t, ports(hubPolicy(true)), guard.LibIPsec)
	if _, err := tab.Install(ctx, gw, hb); err != nil {
		t.Fatal(err)
	}
	capture, err := (&lab.Host{Name: "site A", Netns: a, Iface: "a0"}).StartCapture(ctx, "src host 10.77.2.2")
	if err != nil {
		t.Fatal(err)
	}
	if send(b, a, "10.77.1.2", 2*time.Second, big) {
		t.Error("the hub sent a large datagram from site B into site A's tunnel in clear")
	}
	for _, l := range capture.Stop() {
		if strings.Contains(l, "10.77.2.2 >") || strings.Contains(l, "FRAGMENT-PAYLOAD") {
			t.Errorf("site A saw from site B, through the hub, in clear: %s", l)
			break
		}
	}
	if cs, err := tab.Counters(ctx); err != nil || cs["r-site-a"]+cs["r-site-b"] == 0 {
		t.Errorf("drops %v, %v; want the datagrams counted", cs, err)
	}
}

// inNS runs a command in a namespace the test made.
func inNS(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// twoLinks makes a host (10.78.1.1 on eth1, 10.78.N.1 on dev) with a LAN
// neighbour (10.78.1.2) and one behind dev (10.78.N.2), each reachable.
func twoLinks(t *testing.T, dev string, n int) (h, lan, other string) {
	t.Helper()
	h, lan, other = netns(t), netns(t), netns(t)
	in := func(ns string, args ...string) { t.Helper(); inNS(t, ns, args...) }
	addr := func(host int) string { return fmt.Sprintf("10.78.%d.%d", n, host) }
	in(h, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "l0", "netns", lan)
	in(h, "ip", "link", "add", dev, "type", "veth", "peer", "name", "w0", "netns", other)
	in(h, "ip", "addr", "add", "10.78.1.1/24", "dev", "eth1")
	in(h, "ip", "addr", "add", addr(1)+"/24", "dev", dev)
	in(lan, "ip", "addr", "add", "10.78.1.2/24", "dev", "l0")
	in(other, "ip", "addr", "add", addr(2)+"/24", "dev", "w0")
	for ns, d := range map[string]string{h: "eth1", lan: "l0", other: "w0"} {
		in(ns, "ip", "link", "set", "lo", "up")
		in(ns, "ip", "link", "set", d, "up")
	}
	in(h, "ip", "link", "set", dev, "up")
	for _, to := range []struct{ ns, addr string }{{lan, "10.78.1.2"}, {other, addr(2)}} {
		if !send(h, to.ns, to.addr, 10*time.Second, "in clear") {
			t.Fatalf("nothing reaches %s without a guard", to.addr)
		}
	}
	return h, lan, other
}

// A rule bound to the LAN interface (network = "lan", lan_interface) is a
// hole, or guarded, on that interface only. A host with a LAN (eth1) and
// another link (eth2) permits its traffic to 10.78.0.0/16 in clear on the
// LAN and negotiates it everywhere else: on eth2 clear text is dropped.
// The permit used to be a hole on every interface, so the datagram left
// by eth2 in clear.
func TestIntegrationRuleBoundToInterface(t *testing.T) {
	h, lan, wan := twoLinks(t, "eth2", 2)
	policy := `
[endpoint]
addresses = ["10.78.1.1", "10.78.2.1"]
lan_interface = "eth1"

[[filter_list]]
name = "Servers"
  [[filter_list.filter]]
  source = "me"
  destination = "10.78.0.0/16"

[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[filter_action]]
name = "Permit"
action = "permit"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Encrypt servers"
  filter_list = "Servers"
  filter_action = "Encrypt"
  tunnel_endpoint = "10.78.2.254"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
  [[policy.rule]]
  name = "Servers on the LAN in clear"
  filter_list = "Servers"
  filter_action = "Permit"
  network = "lan"
`
	tab, err := netfilter.Open("/run/netns/" + h)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	for _, backend := range []guard.Backend{guard.Kernel, guard.LibIPsec} {
		rs := derive(t, policy, backend)
		if _, err := tab.Install(ctx, nil, rs); err != nil {
			t.Fatal(err)
		}
		if !send(h, lan, "10.78.1.2", 10*time.Second, "in clear") {
			t.Errorf("%s: the LAN's permit does not let clear text out on the LAN", backend)
		}
		if send(h, wan, "10.78.2.2", 2*time.Second, "in clear") {
			t.Errorf("%s: the LAN's permit let clear text out on another interface", backend)
		}
		if cs, err := tab.Counters(ctx); err != nil || cs["r-encrypt-servers"] == 0 {
			t.Errorf("%s: drops %v, %v", backend, cs, err)
		}
		if fp, err := tab.Fingerprint(ctx); err != nil || fp != rs.Hash() {
			t.Errorf("%s: fingerprint %q, %v: the installed table does not read intact", backend, fp, err)
		}
		if _, err := tab.Install(ctx, rs, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A block filter of neither side (`10.78.2.2 → any`) blocks that host's
// packets to this one (mirrored, as Windows means it), and between
// equally specific entries of two shapes a permit beats a negotiate: the
// neighbour's datagrams arrive in clear while everyone else's are
// dropped. Before ties were ranked, the first shape by name decided and
// the permitted datagrams were dropped.
func TestIntegrationShuntsAndTies(t *testing.T) {
	h, lan, wan := twoLinks(t, "eth2", 2)
	tab, err := netfilter.Open("/run/netns/" + h)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	const head = `
[endpoint]
addresses = ["10.78.1.1", "10.78.2.1"]

[[filter_list]]
name = "Neighbour"
  [[filter_list.filter]]
  source = "10.78.2.2"
  destination = "any"
[[filter_list]]
name = "Everyone"
  [[filter_list.filter]]
  source = "me"
  destination = "any"

[[filter_action]]
name = "Block"
action = "block"
[[filter_action]]
name = "Permit"
action = "permit"
[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
`
	rule := func(name, list, action string) string {
		return "  [[policy.rule]]\n  name = \"" + name + "\"\n  filter_list = \"" + list + "\"\n  filter_action = \"" + action + "\"\n" +
			"  authentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n"
	}
	blocked := derive(t, head+rule("No neighbour", "Neighbour", "Block"), guard.Kernel)
	if _, err := tab.Install(ctx, nil, blocked); err != nil {
		t.Fatal(err)
	}
	if send(wan, h, "10.78.2.1", 2*time.Second, "in clear") {
		t.Error("a block rule from the neighbour to any does not stop its datagrams to this host")
	}
	if !send(lan, h, "10.78.1.1", 10*time.Second, "in clear") {
		t.Error("the block rule stops another host")
	}
	if cs, err := tab.Counters(ctx); err != nil || cs["r-no-neighbour"] == 0 {
		t.Errorf("drops %v, %v", cs, err)
	}

	tie := derive(t, head+rule("Neighbour in clear", "Neighbour", "Permit")+rule("All", "Everyone", "Encrypt"), guard.Kernel)
	if _, err := tab.Install(ctx, blocked, tie); err != nil {
		t.Fatal(err)
	}
	if !send(wan, h, "10.78.2.1", 10*time.Second, "in clear") {
		t.Errorf("the permit lost to an equally specific negotiate rule:\n%s", nft(t, h, "list", "table", "inet", "swanmgr"))
	}
	if send(lan, h, "10.78.1.1", 2*time.Second, "in clear") {
		t.Error("clear text from a host only the negotiate rule covers arrived")
	}
	if fp, err := tab.Fingerprint(ctx); err != nil || fp != tie.Hash() {
		t.Errorf("fingerprint %q, %v: the patched table does not read intact", fp, err)
	}
	if _, err := tab.Install(ctx, tie, nil); err != nil {
		t.Fatal(err)
	}
}

// On libipsec a protected packet leaves through ipsec0, not through the
// interface a rule is bound to. There a rule bound to the LAN counts with
// its guarded negotiate entries only: a block bound to the LAN does not
// stop a tunnel's traffic that a wider negotiate rule protects, and a
// permit bound to the LAN is no hole in a wider block rule for it (both
// were so when ipsec0 counted as every bound interface for every entry).
// Here ipsec0 is a veth to a namespace behind "the tunnel".
func TestIntegrationBoundRuleOnLibipsec(t *testing.T) {
	h, _, tun := twoLinks(t, "ipsec0", 9)
	const head = `
[endpoint]
addresses = ["10.78.1.1", "10.78.9.1"]
lan_interface = "eth1"

[[filter_list]]
name = "Site"
  [[filter_list.filter]]
  source = "me"
  destination = "10.78.0.0/16"
[[filter_list]]
name = "Part"
  [[filter_list.filter]]
  source = "me"
  destination = "10.78.9.0/24"

[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[filter_action]]
name = "Block"
action = "block"
[[filter_action]]
name = "Permit"
action = "permit"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Wide"
  filter_list = "Site"
  filter_action = "%s"
  tunnel_endpoint = "10.78.9.254"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
  [[policy.rule]]
  name = "On the LAN"
  filter_list = "Part"
  filter_action = "%s"
  network = "lan"
`
	tab, err := netfilter.Open("/run/netns/" + h)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	for _, c := range []struct {
		wide, lan string
		arrives   bool
	}{
		{"Encrypt", "Block", true}, // protected through the tunnel; the LAN's block is the LAN's
		{"Block", "Permit", false}, // blocked everywhere but on the LAN
	} {
		p := fmt.Sprintf(head, c.wide, c.lan)
		if c.wide == "Block" {
			p = strings.Replace(p, "  tunnel_endpoint = \"10.78.9.254\"\n", "", 1)
		}
		rs := derive(t, p, guard.LibIPsec)
		if _, err := tab.Install(ctx, nil, rs); err != nil {
			t.Fatal(err)
		}
		d := 2 * time.Second
		if c.arrives {
			d = 10 * time.Second
		}
		if got := send(h, tun, "10.78.9.2", d, "x"); got != c.arrives {
			t.Errorf("wide %s, %s on the LAN: through ipsec0 arrived %v, want %v:\n%s", c.wide, c.lan, got, c.arrives, nft(t, h, "list", "table", "inet", "swanmgr"))
		}
		if fp, err := tab.Fingerprint(ctx); err != nil || fp != rs.Hash() {
			t.Errorf("fingerprint %q, %v: a libipsec table with bound rules does not read intact", fp, err)
		}
		if _, err := tab.Install(ctx, rs, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// The table's totals over netlink: IPsec's own packets (here a datagram
// to the NAT-T port, which the guard lets through) count as traffic,
// and a dropped packet as dropped, as much as the drop sets' elements
// count; no table has no totals.
func TestIntegrationTotals(t *testing.T) {
	h, lan, wan := twoLinks(t, "eth2", 2)
	policy := `
[endpoint]
addresses = ["10.78.1.1", "10.78.2.1"]

[[filter_list]]
name = "Servers"
  [[filter_list.filter]]
  source = "me"
  destination = "10.78.0.0/16"

[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Encrypt servers"
  filter_list = "Servers"
  filter_action = "Encrypt"
  tunnel_endpoint = "10.78.2.254"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`
	tab, err := netfilter.Open("/run/netns/" + h)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	if _, err := tab.Totals(ctx); !errors.Is(err, netfilter.ErrNoTotals) {
		t.Errorf("totals without a table: %v", err)
	}
	rs := derive(t, policy, guard.Kernel)
	if _, err := tab.Install(ctx, nil, rs); err != nil {
		t.Fatal(err)
	}
	if got, err := tab.Totals(ctx); err != nil || got != (netfilter.Totals{}) {
		t.Fatalf("totals of a new table: %+v, %v", got, err)
	}
	if send(h, wan, "10.78.2.2", 2*time.Second, "in clear") {
		t.Fatal("clear text passed")
	}
	got, err := tab.Totals(ctx)
	cs, cerr := tab.Counters(ctx)
	if err != nil || cerr != nil || got.Dropped == 0 || got.Dropped != cs["r-encrypt-servers"] || got.Traffic != 0 {
		t.Errorf("after drops: totals %+v, %v; counters %v, %v", got, err, cs, cerr)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if b, err := lab.Send(sctx, &lab.Host{Name: h, Netns: h}, &lab.Host{Name: lan, Netns: lan, Addr: netip.MustParseAddr("10.78.1.2")}, "udp", 4500, []byte("nat-t")); err != nil || string(b) != "nat-t" {
		t.Fatalf("a NAT-T datagram: %q, %v", b, err)
	}
	after, err := tab.Totals(ctx)
	if err != nil || after.Traffic == 0 || after.Dropped != got.Dropped {
		t.Errorf("after a NAT-T datagram: totals %+v (before %+v), %v", after, got, err)
	}
}
