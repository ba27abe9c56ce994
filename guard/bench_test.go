package guard_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/guard"
	"sigs.k8s.io/knftables"
)

// bigRuleset is a guard of n negotiate rules of one TCP filter each, as
// the scale benchmark's policy has (one out and one in entry per rule);
// port is the first rule's port.
func bigRuleset(n, port int) *guard.Ruleset {
	rs := &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel}
	for i := range n {
		p := 22
		if i == 0 {
			p = port
		}
		name := fmt.Sprintf("r%d", i)
		counter := fmt.Sprintf("c%d", i)
		rs.Rules = append(rs.Rules, guard.Rule{Name: name, Counter: counter, Verdict: guard.Negotiate})
		peer := fmt.Sprintf("10.%d.%d.0", 1+i/256, i%256)
		rs.Entries = append(rs.Entries,
			guard.Entry{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", peer, "tcp", fmt.Sprint(p)}, Verdict: guard.Negotiate, Counter: counter},
			guard.Entry{Family: 4, Shape: "4-s32-d32-p-sp-i", Key: []string{peer, "172.16.98.231", "tcp", fmt.Sprint(p)}, Verdict: guard.Negotiate, Counter: counter})
	}
	slices.SortFunc(rs.Entries, func(x, y guard.Entry) int {
		if c := x.Family - y.Family; c != 0 {
			return c
		}
		if x.Shape != y.Shape {
			if x.Shape < y.Shape {
				return -1
			}
			return 1
		}
		return slices.Compare(x.Key, y.Key)
	})
	return rs
}

// go test -run '^$' -bench 'Patch|Merge' ./guard/
func BenchmarkPatch(b *testing.B) {
	prev, next := bigRuleset(5000, 22), bigRuleset(5000, 2222)
	during := guard.Merge(prev, next)
	live := prev.Hash()
	fake := knftables.NewFake(knftables.InetFamily, guard.Table)
	b.ReportAllocs()
	for b.Loop() {
		guard.Fill(fake.NewTransaction(), live, prev, during)
	}
}

func BenchmarkMerge(b *testing.B) {
	prev, next := bigRuleset(5000, 22), bigRuleset(5000, 2222)
	b.ReportAllocs()
	for b.Loop() {
		guard.Merge(prev, next)
	}
}

func BenchmarkChangedRules(b *testing.B) {
	prev, next := bigRuleset(5000, 22), bigRuleset(5000, 2222)
	b.ReportAllocs()
	for b.Loop() {
		guard.ChangedRules(prev, next)
	}
}

func BenchmarkHash(b *testing.B) {
	rs := bigRuleset(5000, 22)
	b.ReportAllocs()
	for b.Loop() {
		rs.Hash()
	}
}

// go test -run '^$' -bench Derive ./guard/
func BenchmarkDerive(b *testing.B) {
	var p strings.Builder
	p.WriteString("assign = \"G\"\n[endpoint]\naddresses = [\"172.16.98.231\"]\n[[filter_action]]\nname = \"E\"\naction = \"negotiate\"\n")
	for i := range 5000 {
		fmt.Fprintf(&p, "[[filter_list]]\nname = \"P%d\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"10.1.%d.%d\"\nprotocol = \"tcp\"\ndestination_port = 22\n", i, i/256, i%256)
	}
	p.WriteString("[[policy]]\nname = \"G\"\n")
	for i := range 5000 {
		fmt.Fprintf(&p, "[[policy.rule]]\nname = \"P%d\"\nfilter_list = \"P%d\"\nfilter_action = \"E\"\nauthentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n", i, i)
	}
	a := assigned(b, p.String())
	b.ReportAllocs()
	for b.Loop() {
		if _, probs := guard.Derive(a, guard.Kernel); probs != nil {
			b.Fatal(probs)
		}
	}
}
