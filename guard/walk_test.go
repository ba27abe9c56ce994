package guard

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"sigs.k8s.io/knftables"
)

// randomRuleset is a sortedUnique ruleset drawn from a small universe of
// shapes, keys, verdicts and counters, so that two draws overlap.
func randomRuleset(r *rand.Rand) *Ruleset {
	rs := &Ruleset{Format: Format, Backend: Kernel}
	shapes := []string{"4-s32-d32-p-dp-o", "4-s32-d32-p-sp-i", "4-s24-o", "6-d128-i"}
	verdicts := []Verdict{Negotiate, Pass, Block}
	seen := map[string]bool{}
	for range r.IntN(40) {
		e := Entry{Family: 4, Shape: shapes[r.IntN(len(shapes))], Verdict: verdicts[r.IntN(len(verdicts))]}
		if e.Shape[0] == '6' {
			e.Family = 6
		}
		e.Key = []string{fmt.Sprintf("10.0.0.%d", r.IntN(6)), fmt.Sprint(r.IntN(3))}
		if e.Verdict != Pass {
			e.Counter = fmt.Sprintf("c%d", r.IntN(4))
		} else {
			e.Low = r.IntN(2) == 0
		}
		if !seen[e.ID()] {
			seen[e.ID()] = true
			rs.Entries = append(rs.Entries, e)
		}
	}
	for range r.IntN(5) {
		rs.Rules = append(rs.Rules, Rule{Name: fmt.Sprintf("r%d", r.IntN(4)), Counter: fmt.Sprintf("c%d", r.IntN(4)), Verdict: verdicts[r.IntN(3)]})
	}
	sortEntries(rs.Entries)
	return rs
}

// The walks give what the by-ID code gave: Merge the same ruleset, patch
// the same commands in the same order.
func TestWalksAsByID(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fake := knftables.NewFake(knftables.InetFamily, Table)
	for i := range 3000 {
		a, b := randomRuleset(r), randomRuleset(r)
		if !sortedUnique(a.Entries) || !sortedUnique(b.Entries) {
			t.Fatal("the generator makes rulesets that are not sortedUnique")
		}
		got := Merge(a, b)
		// The rules as they were merged before: b's, then a's not in b.
		var rules []Rule
		seen := map[string]bool{}
		for _, rs := range []*Ruleset{b, a} {
			for _, r := range rs.Rules {
				if k := r.Name + "\x00" + r.Counter; !seen[k] {
					seen[k] = true
					rules = append(rules, r)
				}
			}
		}
		want := mergeByID(a, b, &Ruleset{Format: Format, Backend: b.Backend, Rules: rules})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("draw %d: Merge\n%+v\nwant\n%+v", i, got.Entries, want.Entries)
		}
		nextShapes := map[string]bool{}
		for _, e := range b.Entries {
			nextShapes[e.Shape] = true
		}
		tx, txByID := fake.NewTransaction(), fake.NewTransaction()
		patchWalk(tx, a, b, nextShapes)
		patchByID(txByID, a, b, nextShapes)
		if got, want := tx.String(), txByID.String(); got != want {
			t.Fatalf("draw %d: patch sent\n%s\nwant\n%s", i, got, want)
		}
		if i == 0 && tx.NumOperations() == 0 {
			t.Fatal("the first draw patches nothing: the test tests nothing")
		}
	}
}

// Hash gives the hashes live tables carry: these were computed with the
// code of before the block writes, and an empty ruleset hashes as nothing.
func TestHashAsBefore(t *testing.T) {
	big := func(n, port int) *Ruleset {
		rs := &Ruleset{Format: 3, Backend: Kernel} // the hashes are of Format 3 rulesets
		for i := range n {
			p := 22
			if i == 0 {
				p = port
			}
			c := fmt.Sprintf("c%d", i)
			rs.Rules = append(rs.Rules, Rule{Name: fmt.Sprintf("r%d", i), Counter: c, Verdict: Negotiate})
			peer := fmt.Sprintf("10.%d.%d.0", 1+i/256, i%256)
			rs.Entries = append(rs.Entries,
				Entry{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", peer, "tcp", fmt.Sprint(p)}, Verdict: Negotiate, Counter: c},
				Entry{Family: 4, Shape: "4-s32-d32-p-sp-i", Key: []string{peer, "172.16.98.231", "tcp", fmt.Sprint(p)}, Verdict: Negotiate, Counter: c})
		}
		sortEntries(rs.Entries)
		return rs
	}
	for _, c := range []struct {
		n    int
		want string
	}{{0, "e3b0c44298fc1c14"}, {1, "cf494e5a579a784f"}, {7, "127ed3606033f657"}, {300, "750316a84d19807c"}, {5000, "ac528fb431acbbcc"}} {
		rs := big(c.n, 2222)
		if c.n == 7 {
			rs.Entries[3].Low = true
			rs.Entries[2].Key = append(rs.Entries[2].Key, "123456789012")
			rs.Rules[0].Name = string(make([]byte, 150))
		}
		if got := rs.Hash(); got != c.want {
			t.Errorf("%d rules: hash %s, want %s", c.n, got, c.want)
		}
	}
}

// Changes counts what the by-ID count did.
func TestChangesAsByID(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		a, b := randomRuleset(r), randomRuleset(r)
		added, removed := Changes(a, b)
		ids := map[string]Entry{}
		for _, en := range a.Entries {
			ids[en.ID()] = en
		}
		wantAdded, wantRemoved := 0, len(a.Entries)
		for _, en := range b.Entries {
			old, ok := ids[en.ID()]
			if ok {
				wantRemoved--
			}
			if !ok || !old.SameAction(en) {
				wantAdded++
			}
		}
		if added != wantAdded || removed != wantRemoved {
			t.Fatalf("draw %d: %d added, %d removed; want %d, %d", i, added, removed, wantAdded, wantRemoved)
		}
	}
}
