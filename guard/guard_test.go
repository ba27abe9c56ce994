package guard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
)

// assigned validates a policy written into a temporary folder with a key
// file beside it.
func assigned(t *testing.T, policy string) *model.Assigned {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte("a-preshared-key-of-some-length-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := model.Parse(path, []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const head = `
[endpoint]
name = "Alicepc"
addresses = ["172.16.98.231"]
`

func rule(name, list, action string) string {
	return `
  [[policy.rule]]
  name = "` + name + `"
  filter_list = "` + list + `"
  filter_action = "` + action + `"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`
}

const kb = head + `
[[filter_list]]
name = "Abczz"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6667
  [[filter_list.filter]]
  source = "172.31.67.244"
  destination = "me"
  protocol = "tcp"
  destination_port = 6668

[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
` + `
  [[policy.rule]]
  name = "Abczz with Bob"
  filter_list = "Abczz"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret_file = "k.psk" } ]
`

func keys(rs *guard.Ruleset) map[string]guard.Entry {
	m := map[string]guard.Entry{}
	for _, e := range rs.Entries {
		m[e.Shape+" "+strings.Join(e.Key, " . ")] = e
	}
	return m
}

func TestDeriveKnowledgeBase(t *testing.T) {
	rs, probs := guard.Derive(assigned(t, kb), guard.LibIPsec)
	if probs != nil {
		t.Fatal(probs)
	}
	got := keys(rs)
	// Each filter in both directions: Alice to Bob's 6667 and the
	// replies, Bob to Alice's 6668 and the replies.
	want := []string{
		"4-s32-d32-p-dp-o 172.16.98.231 . 172.31.67.244 . 6 . 6667",
		"4-s32-d32-p-sp-i 172.31.67.244 . 172.16.98.231 . 6 . 6667",
		"4-s32-d32-p-dp-i 172.31.67.244 . 172.16.98.231 . 6 . 6668",
		"4-s32-d32-p-sp-o 172.16.98.231 . 172.31.67.244 . 6 . 6668",
	}
	if len(got) != len(want) {
		t.Fatalf("entries: %v, want %v", got, want)
	}
	for _, w := range want {
		e, ok := got[w]
		if !ok {
			t.Errorf("missing %s in %v", w, got)
			continue
		}
		if e.Verdict != guard.Negotiate || e.Counter != "r-abczz-with-bob" {
			t.Errorf("%s: %+v", w, e)
		}
	}
	if g := rs.Guarded(); len(g) != 1 || g[0].Name != "Abczz with Bob" {
		t.Errorf("guarded rules: %+v", g)
	}
}

func TestDeriveOptOutAndPermitAreHoles(t *testing.T) {
	p := head + `
[[filter_list]]
name = "All to Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
[[filter_list]]
name = "Ping Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "icmp"
[[filter_list]]
name = "Web"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 80

[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[filter_action]]
name = "Encrypt, trust charon"
action = "negotiate"
guard = false
[[filter_action]]
name = "Permit"
action = "permit"

[[policy]]
name = "P"
` + rule("All", "All to Bob", "Encrypt") + rule("Ping", "Ping Bob", "Permit") + rule("Web", "Web", "Encrypt, trust charon")
	rs, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if probs != nil {
		t.Fatal(probs)
	}
	got := keys(rs)
	for k, want := range map[string]guard.Verdict{
		"4-s32-d32-o 172.16.98.231 . 172.31.67.244":               guard.Negotiate,
		"4-s32-d32-p-o 172.16.98.231 . 172.31.67.244 . 1":         guard.Pass,
		"4-s32-d32-p-dp-o 172.16.98.231 . 172.31.67.244 . 6 . 80": guard.Pass,
	} {
		if got[k].Verdict != want {
			t.Errorf("%s: verdict %q, want %q (entries %v)", k, got[k].Verdict, want, got)
		}
	}
	if g := rs.Guarded(); len(g) != 1 || g[0].Name != "All" {
		t.Errorf("guarded: %+v", g)
	}
}

func TestDeriveNothingGuarded(t *testing.T) {
	p := head + `
[[filter_list]]
name = "L"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
[[filter_action]]
name = "Permit"
action = "permit"
[[policy]]
name = "P"
` + rule("R", "L", "Permit")
	if rs, probs := guard.Derive(assigned(t, p), guard.Kernel); rs != nil || probs != nil {
		t.Errorf("a policy without guarded rules: %+v, %v", rs, probs)
	}
}

func TestDeriveDNSNameNeedsAddress(t *testing.T) {
	p := head + `
[[filter_list]]
name = "L"
  [[filter_list.filter]]
  source = "me"
  destination = "bob.example.org"
[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[policy]]
name = "P"
` + rule("R", "L", "Encrypt")
	_, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if len(probs) != 1 || !strings.Contains(probs[0].Error(), "p.toml:") || !strings.Contains(probs[0].Error(), `DNS name (bob.example.org)`) ||
		!strings.Contains(probs[0].Error(), `guard = false in filter action "Encrypt"`) {
		t.Errorf("problems: %v", probs)
	}
}

func TestDeriveAnyIsBothFamilies(t *testing.T) {
	p := `
[endpoint]
name = "Alicepc"
addresses = ["172.16.98.231", "2001:db8::1"]
[[filter_list]]
name = "L"
  [[filter_list.filter]]
  source = "me"
  destination = "any"
  protocol = "udp"
  destination_port = 514
[[filter_action]]
name = "Block"
action = "block"
[[policy]]
name = "P"
  [[policy.rule]]
  name = "R"
  filter_list = "L"
  filter_action = "Block"
`
	rs, probs := guard.Derive(assigned(t, p), guard.Kernel)
	if probs != nil {
		t.Fatal(probs)
	}
	got := keys(rs)
	for _, k := range []string{
		"4-s32-d0-p-dp-o 172.16.98.231 . 17 . 514",
		"4-s0-d32-p-sp-i 172.16.98.231 . 17 . 514",
		"6-s128-d0-p-dp-o 2001:db8::1 . 17 . 514",
		"6-s0-d128-p-sp-i 2001:db8::1 . 17 . 514",
	} {
		if got[k].Verdict != guard.Block {
			t.Errorf("missing block entry %s in %v", k, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d entries, want 4: %v", len(got), got)
	}
}

func entry(shape string, v guard.Verdict, key ...string) guard.Entry {
	e := guard.Entry{Family: 4, Shape: shape, Key: key, Verdict: v}
	if v != guard.Pass {
		e.Counter = "r-x"
	}
	return e
}

func TestMergeIsAtLeastAsStrictAsBoth(t *testing.T) {
	a := &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel, Rules: []guard.Rule{{Name: "x", Counter: "r-x", Verdict: guard.Negotiate}},
		Entries: []guard.Entry{
			entry("4-s32-d32", guard.Negotiate, "1.1.1.1", "2.2.2.2"),
			entry("4-s32-d32", guard.Pass, "1.1.1.1", "3.3.3.3"),
			entry("4-s32-d32", guard.Pass, "1.1.1.1", "4.4.4.4"),
		}}
	b := &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel, Rules: []guard.Rule{{Name: "x", Counter: "r-x", Verdict: guard.Block}},
		Entries: []guard.Entry{
			entry("4-s32-d32", guard.Block, "1.1.1.1", "2.2.2.2"),
			entry("4-s32-d32", guard.Negotiate, "1.1.1.1", "3.3.3.3"),
			entry("4-s32-d32", guard.Pass, "1.1.1.1", "4.4.4.4"),
			entry("4-s32-d32", guard.Pass, "1.1.1.1", "5.5.5.5"),
		}}
	m := keys(guard.Merge(a, b))
	for k, want := range map[string]guard.Verdict{
		"4-s32-d32 1.1.1.1 . 2.2.2.2": guard.Block,     // stronger of the two
		"4-s32-d32 1.1.1.1 . 3.3.3.3": guard.Negotiate, // a hole only in a
		"4-s32-d32 1.1.1.1 . 4.4.4.4": guard.Pass,      // a hole in both
	} {
		if m[k].Verdict != want {
			t.Errorf("%s: %q, want %q", k, m[k].Verdict, want)
		}
	}
	if _, ok := m["4-s32-d32 1.1.1.1 . 5.5.5.5"]; ok {
		t.Errorf("a hole only the new policy has is open while it is being applied: %v", m)
	}
	if guard.Merge(nil, b) != b || guard.Merge(a, nil) != a {
		t.Error("Merge with nil")
	}
}

// install runs what Fill produces on a fake nftables and returns its dump.
func install(t *testing.T, fake *knftables.Fake, live string, prev, next *guard.Ruleset) bool {
	t.Helper()
	tx := fake.NewTransaction()
	changed := guard.Fill(tx, live, prev, next)
	if !changed {
		return false
	}
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("transaction: %v\n%s", err, tx)
	}
	return true
}

func liveHash(t *testing.T, fake *knftables.Fake) string {
	t.Helper()
	sets, err := fake.List(context.Background(), "sets")
	if err != nil {
		if knftables.IsNotFound(err) {
			return ""
		}
		t.Fatal(err)
	}
	for _, s := range sets {
		if strings.HasPrefix(s, guard.FingerprintSet) {
			return strings.TrimPrefix(s, guard.FingerprintSet)
		}
	}
	return ""
}

// sortedDump is the fake's table with its lines sorted: elements come
// out in the order they were added.
func sortedDump(fake *knftables.Fake) string {
	lines := strings.Split(fake.Dump(), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// A patch from the ruleset that is live gives exactly what a fresh
// install gives, for every pair of a few rulesets (added, removed and
// changed rules, shapes that come and go, another backend).
func TestPatchEqualsFullInstall(t *testing.T) {
	extra := `
[[filter_list]]
name = "Syslog"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "udp"
  destination_port = 514
[[filter_list]]
name = "Any to Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
[[filter_action]]
name = "Block"
action = "block"
[[filter_action]]
name = "Permit"
action = "permit"
`
	pols := []*guard.Ruleset{}
	for i, p := range []string{
		kb,
		kb + extra + rule("Syslog", "Syslog", "Block"),
		kb + extra + rule("Syslog", "Syslog", "Encrypt") + rule("All", "Any to Bob", "Block"),
		kb + extra + rule("All", "Any to Bob", "Permit"),
	} {
		rs, probs := guard.Derive(assigned(t, p), guard.LibIPsec)
		if probs != nil {
			t.Fatalf("policy %d: %v", i, probs)
		}
		pols = append(pols, rs)
	}
	kernel := *pols[1]
	kernel.Backend = guard.Kernel
	pols = append(pols, &kernel)

	want := make([]string, len(pols))
	for i, rs := range pols {
		fake := knftables.NewFake(knftables.InetFamily, guard.Table)
		install(t, fake, "", nil, rs)
		want[i] = sortedDump(fake)
		if liveHash(t, fake) != rs.Hash() {
			t.Fatalf("policy %d: fingerprint %q, want %q", i, liveHash(t, fake), rs.Hash())
		}
	}
	for i, a := range pols {
		for j, b := range pols {
			fake := knftables.NewFake(knftables.InetFamily, guard.Table)
			install(t, fake, "", nil, a)
			changed := install(t, fake, liveHash(t, fake), a, b)
			if changed != (i != j) {
				t.Errorf("%d -> %d: changed = %v", i, j, changed)
			}
			if got := sortedDump(fake); got != want[j] {
				t.Errorf("%d -> %d: patched table differs from a fresh install\n--- patched\n%s\n--- fresh\n%s", i, j, got, want[j])
			}
			if changed && strings.Contains(fake.LastTransaction.String(), "delete table") {
				t.Errorf("%d -> %d: a patch replaced the whole table", i, j)
			}
		}
	}
}

// A live table that is not the one swanmgr recorded (edited by hand, or
// from a run that was killed) is replaced whole.
func TestForeignLiveTableIsReplaced(t *testing.T) {
	rs, _ := guard.Derive(assigned(t, kb), guard.LibIPsec)
	fake := knftables.NewFake(knftables.InetFamily, guard.Table)
	install(t, fake, "", nil, rs)
	want := sortedDump(fake)
	tx := fake.NewTransaction()
	tx.Delete(&knftables.Element{Map: "v-" + rs.Entries[0].Shape, Key: rs.Entries[0].Key})
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if !install(t, fake, "someone-else", rs, rs) {
		t.Fatal("nothing done for a foreign table")
	}
	if got := sortedDump(fake); got != want {
		t.Errorf("after replacement:\n%s\nwant\n%s", got, want)
	}
	// Removing: nil next deletes the table, and nothing is done when
	// there is none.
	if !install(t, fake, rs.Hash(), rs, nil) {
		t.Fatal("remove did nothing")
	}
	if liveHash(t, fake) != "" {
		t.Error("table still there")
	}
	if install(t, fake, "", rs, nil) {
		t.Error("removing an absent table did something")
	}
}

// referenceMerge is Merge as first written (maps of entries, a stable
// sort): the quicker Merge must give what it gives.
func referenceMerge(a, b *guard.Ruleset) *guard.Ruleset {
	strength := map[guard.Verdict]int{guard.Pass: 0, guard.Negotiate: 1, guard.Block: 2}
	out := &guard.Ruleset{Format: guard.Format, Backend: b.Backend}
	seen := map[string]bool{}
	for _, rs := range []*guard.Ruleset{b, a} {
		for _, r := range rs.Rules {
			if k := r.Name + "\x00" + r.Counter; !seen[k] {
				seen[k] = true
				out.Rules = append(out.Rules, r)
			}
		}
	}
	byID := map[string]int{}
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, e := range a.Entries {
		inA[e.ID()] = true
	}
	for _, e := range b.Entries {
		inB[e.ID()] = true
	}
	for _, rs := range []*guard.Ruleset{b, a} {
		for _, e := range rs.Entries {
			id := e.ID()
			if e.Verdict == guard.Pass && (!inA[id] || !inB[id]) {
				continue
			}
			if i, ok := byID[id]; ok {
				if strength[e.Verdict] > strength[out.Entries[i].Verdict] {
					out.Entries[i] = e
				} else if e.Verdict == guard.Pass && out.Entries[i].Verdict == guard.Pass && e.Low {
					out.Entries[i].Low = true
				}
				continue
			}
			byID[id] = len(out.Entries)
			out.Entries = append(out.Entries, e)
		}
	}
	slices.SortStableFunc(out.Entries, func(x, y guard.Entry) int {
		if x.Family != y.Family {
			return x.Family - y.Family
		}
		if c := strings.Compare(x.Shape, y.Shape); c != 0 {
			return c
		}
		return slices.Compare(x.Key, y.Key)
	})
	return out
}

func TestMergeLikeReference(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	verdicts := []guard.Verdict{guard.Pass, guard.Negotiate, guard.Block}
	gen := func() *guard.Ruleset {
		rs := &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel}
		for i := rnd.IntN(6); i > 0; i-- {
			rs.Rules = append(rs.Rules, guard.Rule{Name: fmt.Sprint("r", rnd.IntN(4)), Counter: fmt.Sprint("c", rnd.IntN(3)), Verdict: verdicts[rnd.IntN(3)]})
		}
		for i := rnd.IntN(40); i > 0; i-- {
			e := entry([]string{"4-s32-d32-o", "4-s32-d32-i", "4-s0-d32-o", "6-s0-d128-i"}[rnd.IntN(4)], verdicts[rnd.IntN(3)], fmt.Sprint("10.0.0.", rnd.IntN(6)), fmt.Sprint("10.0.1.", rnd.IntN(6)))
			e.Family = 4 + 2*rnd.IntN(2)
			e.Low = e.Verdict == guard.Pass && rnd.IntN(2) == 0
			rs.Entries = append(rs.Entries, e) // duplicates of an ID too
		}
		return rs
	}
	for i := 0; i < 3000; i++ {
		a, b := gen(), gen()
		if got, want := guard.Merge(a, b), referenceMerge(a, b); !reflect.DeepEqual(got, want) {
			t.Fatalf("Merge(%+v, %+v):\n%+v\nwant\n%+v", a, b, got, want)
		}
	}
}

// Two rules for the same traffic: the guard lets win what charon lets win
// between two equally specific policies (render's priorities): block,
// then permit, then negotiate; within one action the guarded rule, then
// the earlier. The permit used to lose to the negotiate, so the guard
// dropped traffic the policy permits.
func TestDeriveSameTrafficRanksLikeCharon(t *testing.T) {
	p := head + `
[[filter_list]]
name = "Bob"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"

[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[filter_action]]
name = "Encrypt, trust charon"
action = "negotiate"
guard = false
[[filter_action]]
name = "Permit"
action = "permit"
[[filter_action]]
name = "Block"
action = "block"

[[policy]]
name = "P"
`
	const key = "4-s32-d32-o 172.16.98.231 . 172.31.67.244"
	for _, c := range []struct {
		rules []string // actions, in rule order
		want  guard.Verdict
	}{
		{[]string{"Encrypt", "Permit"}, guard.Pass},
		{[]string{"Permit", "Encrypt"}, guard.Pass},
		{[]string{"Permit", "Block"}, guard.Block},
		{[]string{"Block", "Encrypt"}, guard.Block},
		{[]string{"Encrypt, trust charon", "Encrypt"}, guard.Negotiate},
		{[]string{"Encrypt", "Encrypt, trust charon"}, guard.Negotiate},
	} {
		pol := p
		for i, a := range c.rules {
			pol += rule(fmt.Sprintf("R%d", i), "Bob", a)
		}
		rs, probs := guard.Derive(assigned(t, pol), guard.Kernel)
		if probs != nil {
			t.Fatal(probs)
		}
		if got := keys(rs)[key]; got.Verdict != c.want {
			t.Errorf("rules %v: verdict %q, want %q", c.rules, got.Verdict, c.want)
		}
	}
}

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
