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
func assigned(t testing.TB, policy string) *model.Assigned {
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
	changed, _ := guard.Fill(tx, live, prev, next)
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
