package guard

// Comparing rulesets: entries in order, and what two rulesets make
// together (Merge) or differ in (Changes, ChangedRules).

import (
	"slices"
	"strings"
)

// entryIDs are the IDs of es, in order.
func entryIDs(es []Entry) []string {
	out := make([]string, len(es))
	for i := range es {
		out[i] = es[i].ID()
	}
	return out
}

// sortedUnique says whether es is in compareEntries' order with no ID
// twice: what Derive, Merge and current return, and so every ruleset
// swanmgr records.
func sortedUnique(es []Entry) bool {
	for i := 1; i < len(es); i++ {
		if compareEntries(es[i-1], es[i]) >= 0 {
			return false
		}
	}
	return true
}

// walkEntries calls fn for the entries of a and of b, both sortedUnique,
// in their order: with both when they have one ID, else with the one (the
// other nil). Two rulesets of 10,000 entries are compared in well under a
// millisecond, with no IDs made and no maps.
func walkEntries(a, b []Entry, fn func(x, y *Entry)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b):
			fn(&a[i], nil)
			i++
		case i == len(a):
			fn(nil, &b[j])
			j++
		default:
			switch c := compareEntries(a[i], b[j]); {
			case c < 0:
				fn(&a[i], nil)
				i++
			case c > 0:
				fn(nil, &b[j])
				j++
			default:
				fn(&a[i], &b[j])
				i++
				j++
			}
		}
	}
}

// sortEntries orders entries by family, shape and key: the order the
// ruleset (and its hash) has whatever order the policy was read in.
func sortEntries(es []Entry) {
	slices.SortStableFunc(es, compareEntries)
}

func compareEntries(x, y Entry) int {
	if x.Family != y.Family {
		return x.Family - y.Family
	}
	if c := strings.Compare(x.Shape, y.Shape); c != 0 {
		return c
	}
	return slices.Compare(x.Key, y.Key)
}

// Current is rs in this package's Format (see current).
func Current(rs *Ruleset) *Ruleset { return current(rs) }

// current is rs in this package's Format: a ruleset of Format 3 has the
// same entries; one of Format 0 (shapes
// of both directions) has each entry in both directions, which asks of
// every packet what that ruleset's table asked of it on output and input,
// and more of a forwarded one.
func current(rs *Ruleset) *Ruleset {
	if rs == nil || rs.Format == Format {
		return rs
	}
	if rs.Format == 3 {
		// The same entries; only the table around them differs.
		return &Ruleset{Format: Format, Backend: rs.Backend, Rules: rs.Rules, Entries: rs.Entries}
	}
	up := &Ruleset{Format: Format, Backend: rs.Backend, Rules: rs.Rules, Entries: make([]Entry, 0, 2*len(rs.Entries))}
	for _, e := range rs.Entries {
		for _, d := range []string{"-o", "-i"} {
			e2 := e
			e2.Shape = e.Shape + d
			up.Entries = append(up.Entries, e2)
		}
	}
	sortEntries(up.Entries)
	return up
}

// Live says whether the live table's fingerprint is rs: its hash, or, for
// a ruleset of an earlier Format, the hash of what this package installs
// for it (a rolled-back apply puts that back, and the record keeps the
// ruleset as it was).
func (rs *Ruleset) Live(live string) bool {
	if rs == nil || live == "" {
		return false
	}
	return live == rs.Hash() || rs.Format != Format && live == current(rs).Hash()
}

// Merge returns a ruleset at least as strict as both a and b, for the
// moments of an apply when the old policy's connections are still loaded
// and the new one's are being loaded: every block and negotiate entry of
// either (the stronger where both have one), and only the holes (pass
// entries) that both have. Either may be nil.
func Merge(a, b *Ruleset) *Ruleset {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	a, b = current(a), current(b)
	out := &Ruleset{Format: Format, Backend: b.Backend}
	seen := make(map[[2]string]bool, len(b.Rules)+len(a.Rules)/8)
	for _, rs := range []*Ruleset{b, a} {
		for _, r := range rs.Rules {
			k := [2]string{r.Name, r.Counter}
			if !seen[k] {
				seen[k] = true
				out.Rules = append(out.Rules, r)
			}
		}
	}
	if sortedUnique(a.Entries) && sortedUnique(b.Entries) {
		// Every ruleset swanmgr makes: one walk (a 10,000-entry merge
		// runs on every apply).
		out.Entries = make([]Entry, 0, len(b.Entries))
		walkEntries(a.Entries, b.Entries, func(x, y *Entry) {
			switch {
			case y == nil:
				if x.Verdict != Pass {
					out.Entries = append(out.Entries, *x)
				}
			case x == nil:
				if y.Verdict != Pass {
					out.Entries = append(out.Entries, *y)
				}
			default:
				// b's, unless a's is stronger; a hole both have is the
				// weaker of the two.
				o := *y
				switch {
				case x.Verdict.strength() > o.Verdict.strength():
					o = *x
				case x.Verdict == Pass && o.Verdict == Pass && x.Low:
					o.Low = true
				}
				out.Entries = append(out.Entries, o)
			}
		})
		if len(out.Entries) == 0 {
			out.Entries = nil
		}
		return out
	}
	return mergeByID(a, b, out)
}

// mergeByID is Merge's entries for rulesets that are not sortedUnique
// (out has the rules already).
func mergeByID(a, b, out *Ruleset) *Ruleset {
	aIDs, bIDs := entryIDs(a.Entries), entryIDs(b.Entries)
	inA := make(map[string]struct{}, len(a.Entries))
	for _, id := range aIDs {
		inA[id] = struct{}{}
	}
	inB := make(map[string]struct{}, len(b.Entries))
	for _, id := range bIDs {
		inB[id] = struct{}{}
	}
	byID := make(map[string]int, len(b.Entries)+len(a.Entries)/8)
	out.Entries = make([]Entry, 0, len(b.Entries))
	for k, rs := range []*Ruleset{b, a} {
		ids := bIDs
		if k == 1 {
			ids = aIDs
		}
		for j, e := range rs.Entries {
			id := ids[j]
			if e.Verdict == Pass {
				_, okA := inA[id]
				_, okB := inB[id]
				if !okA || !okB {
					continue
				}
			}
			if i, ok := byID[id]; ok {
				switch o := &out.Entries[i]; {
				case e.Verdict.strength() > o.Verdict.strength():
					*o = e
				case e.Verdict == Pass && o.Verdict == Pass && e.Low:
					o.Low = true // the weaker hole
				}
				continue
			}
			byID[id] = len(out.Entries)
			out.Entries = append(out.Entries, e)
		}
	}
	// IDs are unique here, so no two entries compare equal and the
	// quicker unstable sort gives sortEntries' order.
	slices.SortFunc(out.Entries, compareEntries)
	if len(out.Entries) == 0 {
		out.Entries = nil
	}
	return out
}

// Changes counts the entries a patch from prev to next adds (new, or with
// another action) and removes (not in next). Either may be nil.
func Changes(prev, next *Ruleset) (added, removed int) {
	var a, b []Entry
	if prev != nil {
		a = prev.Entries
	}
	if next != nil {
		b = next.Entries
	}
	if sortedUnique(a) && sortedUnique(b) {
		walkEntries(a, b, func(x, y *Entry) {
			switch {
			case y == nil:
				removed++
			case x == nil || !x.SameAction(*y):
				added++
			}
		})
		return added, removed
	}
	ids := map[string]Entry{}
	for _, en := range a {
		ids[en.ID()] = en
	}
	seen := map[string]bool{}
	for _, en := range b {
		seen[en.ID()] = true
		if old, ok := ids[en.ID()]; !ok || !old.SameAction(en) {
			added++
		}
	}
	for id := range ids {
		if !seen[id] {
			removed++
		}
	}
	return added, removed
}

// ChangedRules names the rules whose guard differs between a and b, in
// b's order then a's: a rule in one and not the other, with another
// verdict, or with other drop entries (those carrying its counter). Either
// may be nil. It is how a rule the guard alone enforces (a block rule on
// libipsec) is counted as changed: it has no connection.
func ChangedRules(a, b *Ruleset) []string {
	entries := func(rs *Ruleset) map[string][]string {
		m := map[string][]string{}
		if rs != nil {
			for _, e := range rs.Entries {
				if e.Counter != "" {
					m[e.Counter] = append(m[e.Counter], e.ID()+"|"+string(e.Verdict))
				}
			}
		}
		return m
	}
	rules := func(rs *Ruleset) map[string]Rule {
		m := map[string]Rule{}
		if rs != nil {
			for _, r := range rs.Rules {
				m[r.Name] = r
			}
		}
		return m
	}
	ea, eb, ra, rb := entries(a), entries(b), rules(a), rules(b)
	var out []string
	seen := map[string]bool{}
	check := func(rs *Ruleset) {
		if rs == nil {
			return
		}
		for _, r := range rs.Rules {
			if seen[r.Name] {
				continue
			}
			seen[r.Name] = true
			x, inA := ra[r.Name]
			y, inB := rb[r.Name]
			if inA != inB || x.Verdict != y.Verdict || !slices.Equal(ea[x.Counter], eb[y.Counter]) {
				out = append(out, r.Name)
			}
		}
	}
	check(b)
	check(a)
	return out
}
