package guard

import (
	"slices"
	"testing"
)

func TestChangedRules(t *testing.T) {
	block := Rule{Name: "No admin from Eve", Counter: "r-1", Verdict: Block}
	enc := Rule{Name: "Abczz with Bob", Counter: "r-2", Verdict: Negotiate}
	ent := func(counter, port string, v Verdict) Entry {
		return Entry{Family: 4, Shape: "saddr.proto.dport", Key: []string{"172.20.0.5", "6", port}, Verdict: v, Counter: counter}
	}
	base := &Ruleset{Rules: []Rule{enc, block}, Entries: []Entry{ent("r-1", "2200", Block), ent("r-2", "6667", Negotiate)}}
	for _, tc := range []struct {
		name string
		a, b *Ruleset
		want []string
	}{
		{"the same", base, base, nil},
		{"no guard on either side", nil, nil, nil},
		{"a block rule goes", base, &Ruleset{Rules: []Rule{enc}, Entries: []Entry{ent("r-2", "6667", Negotiate)}}, []string{"No admin from Eve"}},
		{"a block rule comes", &Ruleset{Rules: []Rule{enc}, Entries: []Entry{ent("r-2", "6667", Negotiate)}}, base, []string{"No admin from Eve"}},
		{"its port changes", base, &Ruleset{Rules: []Rule{enc, block}, Entries: []Entry{ent("r-1", "2222", Block), ent("r-2", "6667", Negotiate)}}, []string{"No admin from Eve"}},
		{"its verdict changes", base, &Ruleset{Rules: []Rule{enc, {Name: block.Name, Counter: "r-1", Verdict: Pass}}, Entries: []Entry{ent("r-2", "6667", Negotiate)}}, []string{"No admin from Eve"}},
		{"the guard goes", base, nil, []string{"Abczz with Bob", "No admin from Eve"}},
	} {
		if got := ChangedRules(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
