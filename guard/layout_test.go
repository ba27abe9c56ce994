package guard_test

// The table's layout since Format 3: directions, interfaces, ties across
// shapes, and rulesets of an earlier Format.

import (
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/guard"
)

// gateway is a site's gateway: its LAN 10.77.2.0/24 to the remote site's
// 10.77.1.0/24 through a tunnel. hub adds the reverse rule, as a hub
// between two sites has: traffic from site to site passes through it.
var gateway = head + `
[[filter_list]]
name = "LAN to site A"
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
` + tunnelRule("Site A", "LAN to site A", "172.31.67.1")

var hub = gateway + tunnelRule("Site B", "Site A to site B", "172.31.68.1")

func tunnelRule(name, list, endpoint string) string {
	return strings.Replace(rule(name, list, "Encrypt"), "  authentication", `  tunnel_endpoint = "`+endpoint+`"
  authentication`, 1)
}

// Every entry is of one direction, charon's: out from this side to the
// peer's, in the other way. A site gateway's rule to site A gives its
// LAN's traffic to A an out entry and A's traffic to the LAN an in entry;
// a hub's two rules give each way between the sites an entry of each
// direction. Output looks up out shapes, input in shapes, and forward
// both, one pass each, so that a forwarded packet must pass what the
// kernel's out policy and its fwd policy would ask.
func TestDeriveDirections(t *testing.T) {
	const (
		baOut = "4-s24-d24-o 10.77.2.0/24 . 10.77.1.0/24"
		abIn  = "4-s24-d24-i 10.77.1.0/24 . 10.77.2.0/24"
		abOut = "4-s24-d24-o 10.77.1.0/24 . 10.77.2.0/24"
		baIn  = "4-s24-d24-i 10.77.2.0/24 . 10.77.1.0/24"
	)
	for _, c := range []struct {
		name   string
		policy string
		want   map[string]string // entry: its counter
	}{
		{"gateway", gateway, map[string]string{baOut: "r-site-a", abIn: "r-site-a"}},
		{"hub", hub, map[string]string{baOut: "r-site-a", abIn: "r-site-a", abOut: "r-site-b", baIn: "r-site-b"}},
	} {
		rs, probs := guard.Derive(assigned(t, c.policy), guard.LibIPsec)
		if probs != nil {
			t.Fatal(probs)
		}
		if rs.Format != guard.Format {
			t.Errorf("%s: format %d", c.name, rs.Format)
		}
		got := keys(rs)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		for k, counter := range c.want {
			if e, ok := got[k]; !ok || e.Counter != counter || e.Verdict != guard.Negotiate {
				t.Errorf("%s: %s: %+v, want a negotiate entry of %s", c.name, k, e, counter)
			}
		}
		fake := knftables.NewFake(knftables.InetFamily, guard.Table)
		install(t, fake, "", nil, rs)
		dump := fake.Dump()
		for _, want := range []string{
			`add rule inet swanmgr forward jump fwd-o`,
			`add rule inet swanmgr forward jump fwd-i`,
			`add rule inet swanmgr fwd-o ip saddr . ip daddr @k-4-s24-d24-o goto f-4-s24-d24-o`,
			`add rule inet swanmgr fwd-i ip saddr . ip daddr @k-4-s24-d24-i goto f-4-s24-d24-i`,
			`add rule inet swanmgr output ip saddr . ip daddr @k-4-s24-d24-o goto o-4-s24-d24-o`,
			`add rule inet swanmgr input ip saddr . ip daddr @k-4-s24-d24-i goto i-4-s24-d24-i`,
			`add rule inet swanmgr f-4-s24-d24-o oifname "ipsec0" return`,
			`add rule inet swanmgr f-4-s24-d24-i iifname "ipsec0" return`,
			`add rule inet swanmgr o-4-s24-d24-o oifname "ipsec0" accept`,
			`add rule inet swanmgr i-4-s24-d24-i iifname "ipsec0" accept`,
		} {
			if !strings.Contains(dump, want) {
				t.Errorf("%s: %q missing:\n%s", c.name, want, dump)
			}
		}
		if strings.Contains(dump, "output ip saddr . ip daddr @k-4-s24-d24-i") || strings.Contains(dump, "input ip saddr . ip daddr @k-4-s24-d24-o") {
			t.Errorf("%s: a hook looks up the other direction's shapes:\n%s", c.name, dump)
		}
	}
	// The knowledge base's second filter is written from Bob to this
	// computer: charon's local side is this computer's port 6668.
	rs, _ := guard.Derive(assigned(t, kb), guard.Kernel)
	got := keys(rs)
	for _, k := range []string{
		"4-s32-d32-p-dp-o 172.16.98.231 . 172.31.67.244 . 6 . 6667",
		"4-s32-d32-p-sp-i 172.31.67.244 . 172.16.98.231 . 6 . 6667",
		"4-s32-d32-p-dp-i 172.31.67.244 . 172.16.98.231 . 6 . 6668",
		"4-s32-d32-p-sp-o 172.16.98.231 . 172.31.67.244 . 6 . 6668",
	} {
		if _, ok := got[k]; !ok {
			t.Errorf("knowledge base: %s missing from %v", k, got)
		}
	}
}

// A rule bound to an interface (network = "lan" with lan_interface) is
// guarded on that interface only, and ranks above the same filter on every
// interface, as render ranks its policies (prioIface). A permit bound to
// the LAN used to be a hole on every interface.
func TestDeriveInterface(t *testing.T) {
	p := strings.Replace(head, `addresses = ["172.16.98.231"]`, `addresses = ["172.16.98.231"]
lan_interface = "eth1"`, 1) + `
[[filter_list]]
name = "Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[filter_action]]
name = "Permit"
action = "permit"
[[policy]]
name = "P"
` + rule("All", "Bob", "Encrypt") + strings.Replace(rule("LAN", "Bob", "Permit"), "  authentication", `  network = "lan"
  authentication`, 1)
	for _, b := range []guard.Backend{guard.Kernel, guard.LibIPsec} {
		rs, probs := guard.Derive(assigned(t, p), b)
		if probs != nil {
			t.Fatal(probs)
		}
		got := keys(rs)
		const lan = "4-s32-d32-x65746831-o 172.16.98.231 . 172.31.67.244"
		if got[lan].Verdict != guard.Pass || got["4-s32-d32-o 172.16.98.231 . 172.31.67.244"].Verdict != guard.Negotiate || len(got) != 4 {
			t.Fatalf("%s: entries %v", b, got)
		}
		fake := knftables.NewFake(knftables.InetFamily, guard.Table)
		install(t, fake, "", nil, rs)
		dump := fake.Dump()
		for _, want := range []string{
			`add rule inet swanmgr output oifname "eth1" ip saddr . ip daddr @k-4-s32-d32-x65746831-o goto o-4-s32-d32-x65746831-o`,
			`add rule inet swanmgr input iifname "eth1" ip saddr . ip daddr @k-4-s32-d32-x65746831-i goto i-4-s32-d32-x65746831-i`,
		} {
			if !strings.Contains(dump, want) {
				t.Errorf("%s: %q missing:\n%s", b, want, dump)
			}
		}
		// On libipsec protected packets pass ipsec0: there the bound
		// rule's guarded negotiate entries match, its holes (and block
		// entries) do not.
		tun := `add rule inet swanmgr output oifname "ipsec0" ip saddr . ip daddr @k-4-s32-d32-x65746831-o ip saddr . ip daddr != @k3-4-s32-d32-x65746831-o ip saddr . ip daddr != @k2-4-s32-d32-x65746831-o ip saddr . ip daddr != @k0-4-s32-d32-x65746831-o goto o-4-s32-d32-x65746831-o`
		if strings.Contains(dump, tun) != (b == guard.LibIPsec) {
			t.Errorf("%s: the lookup through ipsec0 is there: %v:\n%s", b, strings.Contains(dump, tun), dump)
		}
		// Bound first: more specific.
		if i, j := strings.Index(dump, "output oifname"), strings.Index(dump, "output ip saddr . ip daddr @k-4-s32-d32-o"); i < 0 || j < 0 || i > j {
			t.Errorf("%s: the interface's lookup does not come first:\n%s", b, dump)
		}
	}
}

// oldHash is the Hash, computed by swanmgr before Format 2, of the ruleset
// TestOldFormatIsReplacedWhole spells out.
const oldHash = "447da1a4e9e36bbe"

// A ruleset recorded before Format 2 is replaced whole: its table has no
// vf- maps for a patch to fill.
func TestOldFormatIsReplacedWhole(t *testing.T) {
	next, _ := guard.Derive(assigned(t, gateway), guard.LibIPsec)
	old := *next
	old.Format = 0
	old.Entries = nil
	for _, e := range next.Entries {
		e.Shape = strings.TrimSuffix(strings.TrimSuffix(e.Shape, "-o"), "-i")
		old.Entries = append(old.Entries, e)
	}
	fake := knftables.NewFake(knftables.InetFamily, guard.Table)
	install(t, fake, "", nil, &old)
	if !install(t, fake, old.Hash(), &old, next) {
		t.Fatal("nothing done")
	}
	if !strings.Contains(fake.LastTransaction.String(), "delete table") {
		t.Errorf("an old ruleset was patched:\n%s", fake.LastTransaction)
	}
	if liveHash(t, fake) != next.Hash() {
		t.Error("fingerprint")
	}
	// A rollback to the old ruleset installs it as this package does;
	// from then on that table is the old ruleset's: nothing to do for
	// it, and a patch (not a replacement, which zeroes the counters) to
	// the next.
	fake = knftables.NewFake(knftables.InetFamily, guard.Table)
	install(t, fake, "", nil, &old)
	if !old.Live(liveHash(t, fake)) || install(t, fake, liveHash(t, fake), &old, &old) {
		t.Error("the old ruleset as installed is not taken for live")
	}
	if !install(t, fake, liveHash(t, fake), &old, next) || strings.Contains(fake.LastTransaction.String(), "delete table") {
		t.Errorf("from the old ruleset as installed, not a patch:\n%s", fake.LastTransaction)
	}
	// Its hash is what the earlier swanmgr computed, so that its table
	// is recognised as the recorded one.
	if got, want := (&guard.Ruleset{Backend: guard.Kernel, Rules: []guard.Rule{{Name: "R", Counter: "r-r", Verdict: guard.Negotiate}},
		Entries: []guard.Entry{{Family: 4, Shape: "4-s32-d32", Key: []string{"10.0.0.1", "10.0.0.2"}, Verdict: guard.Negotiate, Counter: "r-r"}}}).Hash(), oldHash; got != want {
		t.Errorf("hash of a ruleset of before: %s, want %s", got, want)
	}
}

// A block or permit filter with this computer on neither side and no
// tunnel (`192.0.2.7 → any`) has no this side: mirrored, it matches
// packets either way, so its entries are in both directions — Eve's
// packets to this computer are blocked on input.
func TestDeriveShuntOfNeitherSideIsBothWays(t *testing.T) {
	p := head + `
[[filter_list]]
name = "Eve"
  [[filter_list.filter]]
  source = "192.0.2.7"
  destination = "any"
[[filter_action]]
name = "Block"
action = "block"
[[policy]]
name = "P"
` + rule("No Eve", "Eve", "Block")
	rs, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if probs != nil {
		t.Fatal(probs)
	}
	got := keys(rs)
	for _, k := range []string{"4-s32-d0-o 192.0.2.7", "4-s32-d0-i 192.0.2.7", "4-s0-d32-o 192.0.2.7", "4-s0-d32-i 192.0.2.7"} {
		if got[k].Verdict != guard.Block {
			t.Errorf("%s: %+v (entries %v)", k, got[k], got)
		}
	}
}

// Equally specific entries of two shapes (`192.0.2.7 → any` and `any →
// me` both restrict 32 bits) rank as charon ranks equally specific
// policies: a block entry of either first, then a permit's hole, then a
// guarded negotiate entry, then the hole of guard = false. The first
// shape by name used to win: here the negotiate rule's, so clear text
// that the permit lets in was dropped.
func TestTiesAcrossShapesRankByAction(t *testing.T) {
	p := head + `
[[filter_list]]
name = "Eve"
  [[filter_list.filter]]
  source = "192.0.2.7"
  destination = "any"
[[filter_list]]
name = "To me"
  [[filter_list.filter]]
  source = "me"
  destination = "any"
[[filter_action]]
name = "Permit"
action = "permit"
[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[policy]]
name = "P"
` + rule("Eve in clear", "Eve", "Permit") + rule("All", "To me", "Encrypt")
	rs, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if probs != nil {
		t.Fatal(probs)
	}
	fake := knftables.NewFake(knftables.InetFamily, guard.Table)
	install(t, fake, "", nil, rs)
	dump := fake.Dump()
	var input []string
	for _, l := range strings.Split(dump, "\n") {
		if rest, ok := strings.CutPrefix(l, "add rule inet swanmgr input "); ok && strings.Contains(rest, " goto ") {
			input = append(input, rest)
		}
	}
	want := []string{
		"ip saddr @k3-4-s32-d0-i goto i-4-s32-d0-i",
		"ip daddr @k3-4-s0-d32-i goto i-4-s0-d32-i",
		"ip saddr @k2-4-s32-d0-i goto i-4-s32-d0-i",
		"ip daddr @k2-4-s0-d32-i goto i-4-s0-d32-i",
		"ip saddr @k-4-s32-d0-i ip saddr != @k0-4-s32-d0-i goto i-4-s32-d0-i",
		"ip daddr @k-4-s0-d32-i ip daddr != @k0-4-s0-d32-i goto i-4-s0-d32-i",
		"ip saddr @k-4-s32-d0-i goto i-4-s32-d0-i",
		"ip daddr @k-4-s0-d32-i goto i-4-s0-d32-i",
	}
	// The shapes of one tie may come in either order within a level.
	sortPairs := func(xs []string) []string {
		out := slices.Clone(xs)
		for i := 0; i+1 < len(out); i += 2 {
			if out[i] > out[i+1] {
				out[i], out[i+1] = out[i+1], out[i]
			}
		}
		return out
	}
	if !slices.Equal(sortPairs(input), sortPairs(want)) {
		t.Errorf("input lookups:\n%s\nwant\n%s", strings.Join(input, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(dump, "add element inet swanmgr k2-4-s32-d0-i { 192.0.2.7 }") {
		t.Errorf("the permit's hole is not in its rank set:\n%s", dump)
	}
}

// A tie of shapes with negotiate entries only (the knowledge base: this
// computer's ports 6667 and 6668, one a destination port, one a source
// port, in each direction) is looked up once per shape; it is ranked
// only once one of its shapes has a hole or a block entry, and a patch
// between the two rebuilds the lookups.
func TestTiesAreRankedOnlyWithHolesOrBlocks(t *testing.T) {
	plain, _ := guard.Derive(assigned(t, kb), guard.Kernel)
	p := kb + `
[[filter_list]]
name = "SSH to Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 22
[[filter_action]]
name = "Permit"
action = "permit"
` + rule("SSH in clear", "SSH to Bob", "Permit")
	ranked, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if probs != nil {
		t.Fatal(probs)
	}
	lookups := func(fake *knftables.Fake) int {
		n := 0
		for _, l := range strings.Split(fake.Dump(), "\n") {
			if strings.HasPrefix(l, "add rule inet swanmgr output ") && strings.Contains(l, " goto o-") {
				n++
			}
		}
		return n
	}
	fresh := map[*guard.Ruleset]string{}
	for rs, want := range map[*guard.Ruleset]int{plain: 2, ranked: 8} {
		fake := knftables.NewFake(knftables.InetFamily, guard.Table)
		install(t, fake, "", nil, rs)
		if got := lookups(fake); got != want {
			t.Errorf("%d output lookups, want %d:\n%s", got, want, fake.Dump())
		}
		fresh[rs] = sortedDump(fake)
	}
	for _, c := range [][2]*guard.Ruleset{{plain, ranked}, {ranked, plain}} {
		fake := knftables.NewFake(knftables.InetFamily, guard.Table)
		install(t, fake, "", nil, c[0])
		install(t, fake, liveHash(t, fake), c[0], c[1])
		if got := sortedDump(fake); got != fresh[c[1]] {
			t.Errorf("patched table differs from a fresh install\n--- patched\n%s\n--- fresh\n%s", got, fresh[c[1]])
		}
	}
}

// The table totals what it saw (Format 4): every packet of IKE, NAT-T, ESP
// and AH its hooks let through counts on TrafficCounter, every packet it
// drops on DroppedCounter. A ruleset recorded as Format 3 has the same
// entries; its table, which has no such counters, is replaced whole.
func TestCountersAndFormat3(t *testing.T) {
	next, _ := guard.Derive(assigned(t, gateway), guard.Kernel)
	fake := knftables.NewFake(knftables.InetFamily, guard.Table)
	install(t, fake, "", nil, next)
	dump := fake.Dump()
	for _, c := range []string{guard.TrafficCounter, guard.DroppedCounter} {
		if !strings.Contains(dump, "add counter inet swanmgr "+c+"\n") {
			t.Errorf("no counter %s:\n%s", c, dump)
		}
	}
	drops, counted := 0, 0
	for _, line := range strings.Split(dump, "\n") {
		if strings.HasSuffix(line, " drop") {
			drops++
			if !strings.HasSuffix(line, ` counter name "`+guard.DroppedCounter+`" drop`) {
				t.Errorf("a drop not counted: %s", line)
			}
		}
		if strings.Contains(line, "esp, ah") || strings.Contains(line, "{ 500, 4500 }") {
			counted++
			if !strings.HasSuffix(line, ` counter name "`+guard.TrafficCounter+`" accept`) {
				t.Errorf("IPsec's traffic not counted: %s", line)
			}
		}
	}
	if drops == 0 || counted != 9 { // three exemptions on each of three hooks
		t.Errorf("%d drops, %d exemptions counted:\n%s", drops, counted, dump)
	}

	old := *next
	old.Format = 3
	if guard.Current(&old).Hash() != next.Hash() {
		t.Error("a Format 3 ruleset is not this Format's with the same entries")
	}
	// The live table is the Format 3 ruleset's (as the earlier swanmgr
	// installed it): the next change replaces it whole.
	if !old.Live(old.Hash()) {
		t.Fatal("a Format 3 table is not taken for its ruleset")
	}
	tx := fake.NewTransaction()
	if changed, patched := guard.Fill(tx, old.Hash(), &old, next); !changed || patched {
		t.Errorf("from a Format 3 table: changed %v, patched %v", changed, patched)
	}
}
