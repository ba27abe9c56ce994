package guard

import (
	"slices"
	"testing"

	"sigs.k8s.io/knftables"
)

// installed is what a full install of rs leaves in a fake table: set and
// map names, and the number of rules of each chain.
func installed(t *testing.T, rs *Ruleset) (*knftables.Fake, []string, map[string]int) {
	t.Helper()
	fake := knftables.NewFake(knftables.InetFamily, Table)
	tx := fake.NewTransaction()
	full(tx, rs)
	if err := fake.Run(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	sets, rules := tableShape(t, fake)
	return fake, sets, rules
}

func tableShape(t *testing.T, fake *knftables.Fake) ([]string, map[string]int) {
	t.Helper()
	ctx := t.Context()
	sets, _ := fake.List(ctx, "sets")
	maps, _ := fake.List(ctx, "maps")
	chains, err := fake.List(ctx, "chains")
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]int{}
	for _, c := range chains {
		rs, err := fake.ListRules(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		rules[c] = len(rs)
	}
	return append(sets, maps...), rules
}

func TestIntactAsInstalled(t *testing.T) {
	for _, b := range []Backend{Kernel, LibIPsec} {
		rs := &Ruleset{Format: Format, Backend: b, Rules: []Rule{{Name: "R", Counter: "r-r", Verdict: Negotiate}}, Entries: []Entry{
			{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", "172.31.67.244", "6", "22"}, Verdict: Negotiate, Counter: "r-r"},
			{Family: 4, Shape: "4-s32-d32-p-sp-i", Key: []string{"172.31.67.244", "172.16.98.231", "6", "22"}, Verdict: Negotiate, Counter: "r-r"},
			{Family: 4, Shape: "4-s32-d32-x65746831-o", Key: []string{"172.16.98.231", "172.31.67.9"}, Verdict: Pass},
			{Family: 6, Shape: "6-s128-d0-o", Key: []string{"2001:db8::1"}, Verdict: Block, Counter: "r-r"},
		}}
		fake, sets, rules := installed(t, rs)
		if !Intact(sets, rules) {
			t.Fatalf("%s: a full install is not intact: sets %v, rules %v", b, sets, rules)
		}
		// What a hand can do to it.
		for what, change := range map[string]func(map[string]int) []string{
			"flushed table":    func(r map[string]int) []string { clear(r); return sets },
			"flushed chain":    func(r map[string]int) []string { r["output"] = 0; return sets },
			"shape chain edit": func(r map[string]int) []string { r["i-4-s32-d32-p-sp-i"]++; return sets },
			"chain added":      func(r map[string]int) []string { r["mine"] = 1; return sets },
			"chain deleted":    func(r map[string]int) []string { delete(r, "b-6-s128-d0-o"); return sets },
			"forward edit":     func(r map[string]int) []string { r["f-4-s32-d32-p-dp-o"]--; return sets },
			"pass deleted":     func(r map[string]int) []string { delete(r, "fwd-i"); return sets },
			"pass edit":        func(r map[string]int) []string { r["fwd-o"]++; return sets },
			"drop set deleted": func(r map[string]int) []string {
				return slices.DeleteFunc(slices.Clone(sets), func(s string) bool { return s == "d-4-s32-d32-p-sp-i" })
			},
		} {
			r := map[string]int{}
			for k, v := range rules {
				r[k] = v
			}
			if s := change(r); Intact(s, r) {
				t.Errorf("%s: %s taken as intact", b, what)
			}
		}
		// A patch to another ruleset keeps it intact.
		next := &Ruleset{Format: Format, Backend: b, Rules: rs.Rules, Entries: []Entry{rs.Entries[0],
			{Family: 4, Shape: "4-s24-d0-p-i", Key: []string{"10.1.2.0/24", "17"}, Verdict: Pass}}}
		tx := fake.NewTransaction()
		patch(tx, rs, next, rs.Hash(), next.Hash())
		if err := fake.Run(t.Context(), tx); err != nil {
			t.Fatal(err)
		}
		if s, r := tableShape(t, fake); !Intact(s, r) {
			t.Errorf("%s: patched table not intact: sets %v, rules %v", b, s, r)
		}
	}
}

// A table as swanmgr installed it before Format 2 (no vf- maps, a forward
// chain with both protected matches) is intact: it is what the record
// says; the next change replaces it whole (TestOldFormatIsReplacedWhole).
func TestIntactOldLayout(t *testing.T) {
	id := "4-s32-d32"
	sets := []string{"fp-abc", "k-" + id, "d-" + id, "v-" + id}
	rules := map[string]int{"output": 6, "input": 6, "forward": 5, "o-" + id: 4, "i-" + id: 4, "f-" + id: 5, "b-" + id: 2}
	if !Intact(sets, rules) {
		t.Fatal("the layout of before is not intact")
	}
	rules["f-"+id] = 2
	if Intact(sets, rules) {
		t.Error("an old table with the new forward chain is intact")
	}
	if Intact(append(sets, "k-"+id+"-o", "d-"+id+"-o", "v-"+id+"-o"), map[string]int{"output": 6, "input": 6, "forward": 5, "o-" + id: 4, "i-" + id: 4, "f-" + id: 5, "b-" + id: 2}) {
		t.Error("a table of both layouts is intact")
	}
}

// A tie is looked up ranked only with a hole or a block entry among its
// shapes, which the set names do not tell: either count is intact, one
// in between is not.
func TestIntactTies(t *testing.T) {
	neg := func(shape string, key ...string) Entry {
		return Entry{Family: 4, Shape: shape, Key: key, Verdict: Negotiate, Counter: "r-r"}
	}
	plain := &Ruleset{Format: Format, Backend: Kernel, Rules: []Rule{{Name: "R", Counter: "r-r", Verdict: Negotiate}}, Entries: []Entry{
		neg("4-s32-d32-p-dp-o", "172.16.98.231", "172.31.67.244", "6", "6667"),
		neg("4-s32-d32-p-sp-o", "172.16.98.231", "172.31.67.244", "6", "6668"),
	}}
	ranked := &Ruleset{Format: Format, Backend: Kernel, Rules: plain.Rules, Entries: append(slices.Clone(plain.Entries),
		Entry{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", "172.31.67.244", "6", "22"}, Verdict: Pass})}
	for name, rs := range map[string]*Ruleset{"plain": plain, "ranked": ranked} {
		_, sets, rules := installed(t, rs)
		if !Intact(sets, rules) {
			t.Errorf("%s: a full install is not intact: rules %v", name, rules)
		}
		rules["output"]++
		if Intact(sets, rules) {
			t.Errorf("%s: one output rule more is intact", name)
		}
	}
}
