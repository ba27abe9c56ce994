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

// BenchmarkHash: made is a hash made (each time of a ruleset one entry
// shorter, five in turn, more than the hashes kept); kept, asked again.
func BenchmarkHash(b *testing.B) {
	rs := bigRuleset(5000, 22)
	b.Run("made", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			(&guard.Ruleset{Format: rs.Format, Backend: rs.Backend, Rules: rs.Rules, Entries: rs.Entries[:len(rs.Entries)-i%5]}).Hash()
			i++
		}
	})
	b.Run("kept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rs.Hash()
		}
	})
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

// A ruleset's kept hash is the one made; a ruleset whose entries are set
// anew, or set in the same list to another length, or of another format
// or backend, is hashed again; a copy of the ruleset hashes the same.
func TestHashKept(t *testing.T) {
	rs := bigRuleset(1000, 22)
	want := rs.Hash()
	if rs.Hash() != want {
		t.Fatal("asked again, another hash")
	}
	other := bigRuleset(1000, 2222)
	if other.Hash() == want {
		t.Fatal("another ruleset, the same hash")
	}
	cp := &guard.Ruleset{Format: rs.Format, Backend: rs.Backend, Rules: rs.Rules, Entries: rs.Entries}
	if cp.Hash() != want {
		t.Error("a copy hashes otherwise")
	}
	// The same list, in place of the first rule's port 22 entries those
	// of 2222 (a list is not changed once made; one that is set anew is
	// hashed again).
	rs.Entries = slices.Clone(other.Entries)
	if rs.Hash() != other.Hash() {
		t.Error("entries set anew kept the old hash")
	}
	short := &guard.Ruleset{Format: rs.Format, Backend: rs.Backend, Rules: rs.Rules, Entries: rs.Entries[:len(rs.Entries)-1]}
	if short.Hash() == rs.Hash() {
		t.Error("a shorter list kept the hash")
	}
	libipsec := &guard.Ruleset{Format: rs.Format, Backend: guard.LibIPsec, Rules: rs.Rules, Entries: rs.Entries}
	if libipsec.Hash() == rs.Hash() {
		t.Error("another backend kept the hash")
	}
	// Many rulesets one after the other, each asked twice: each its own.
	seen := map[string]bool{}
	for i := range 12 {
		r := bigRuleset(300, 1000+i)
		h := r.Hash()
		if seen[h] || r.Hash() != h {
			t.Fatalf("ruleset %d: hash %s seen before or not kept", i, h)
		}
		seen[h] = true
	}
}
