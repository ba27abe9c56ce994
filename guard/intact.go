package guard

import "strings"

// Intact says whether a live guard table holds exactly the chains, and in
// each the number of rules, that swanmgr installs for the shapes the
// table's sets name (its k- sets): sets lists the table's set and map
// names, rules the number of rules of each of its chains. A table
// flushed by hand (`nft flush table` empties the chains and keeps the
// sets, the fingerprint's among them) or a chain emptied, added or
// edited is not: it would pass what the fingerprint says is dropped. The
// elements of the sets are not compared (that costs a read of the whole
// table). A table of Format 0 is intact if it is one whole; the next
// change replaces it.
func Intact(sets []string, rules map[string]int) bool {
	has := make(map[string]bool, len(sets))
	var shapes []string
	dirs := map[byte]int{}
	for _, s := range sets {
		has[s] = true
		if id, ok := strings.CutPrefix(s, "k-"); ok {
			shapes = append(shapes, id)
			dirs[dirOf(id)]++
		}
	}
	if dirs[0] > 0 && dirs[0] != len(shapes) {
		return false // shapes of both formats
	}
	if dirs[0] > 0 {
		want := map[string]int{}
		wantFormat0(want, shapes)
		return intactAs(want, nil, shapes, has, rules)
	}
	// The rule counts of a shape bound to an interface depend on the
	// backend, which the table does not say: either will do.
	for _, b := range []Backend{Kernel, LibIPsec} {
		want, alts := wantFormat3(shapes, b)
		if intactAs(want, alts, shapes, has, rules) {
			return true
		}
	}
	return false
}

// intactAs says whether the table has the sets of shapes and the rule
// counts want (b- chains added here), or for a chain in alts one of those.
func intactAs(want map[string]int, alts map[string]map[int]bool, shapes []string, has map[string]bool, rules map[string]int) bool {
	old := len(shapes) > 0 && dirOf(shapes[0]) == 0
	for _, id := range shapes {
		if !has["d-"+id] || !has["v-"+id] {
			return false
		}
		for _, l := range levelSets {
			if !old && !has[l+id] {
				return false
			}
		}
		want["b-"+id] = blockChainRules
	}
	if len(rules) != len(want) {
		return false
	}
	for chain, n := range want {
		got, ok := rules[chain]
		switch {
		case !ok:
			return false
		case alts[chain] != nil:
			if !alts[chain][got] {
				return false
			}
		case got != n:
			return false
		}
	}
	return true
}

// wantFormat3 is the rule count of each chain of a Format 3 table of
// shapes; alts, for the chains that look shapes up, every count they may
// have: a tie is looked up ranked only when one of its shapes has a block
// entry or a hole, which the elements tell, not the names.
func wantFormat3(shapes []string, b Backend) (want map[string]int, alts map[string]map[int]bool) {
	want, alts = map[string]int{}, map[string]map[int]bool{}
	o := objectsOf(&Ruleset{Backend: b}, shapes)
	for _, c := range []struct {
		chain, abbr string
		dir         byte
		extra       int
	}{
		{"output", "o", out, len(exemptRules("output"))},
		{"input", "i", in, len(exemptRules("input"))},
		{"fwd-o", "f", out, 0},
		{"fwd-i", "f", in, 0},
	} {
		plain := len(o.lookups(c.dir, c.abbr))
		sums := map[int]bool{0: true}
		for _, g := range o.ties(c.dir) {
			if len(g) < 2 {
				continue
			}
			for _, id := range g {
				o.ranked[id] = true
			}
			delta := len(o.lookups(c.dir, c.abbr)) - plain
			for _, id := range g {
				delete(o.ranked, id)
			}
			next := map[int]bool{}
			for n := range sums {
				next[n], next[n+delta] = true, true
			}
			sums = next
		}
		want[c.chain] = c.extra + plain
		alts[c.chain] = map[int]bool{}
		for n := range sums {
			alts[c.chain][c.extra+plain+n] = true
		}
	}
	want["forward"] = len(exemptRules("forward")) + len(passes)
	if o.ports() {
		want["forward"]++ // defragRule
	}
	for _, id := range shapes {
		for _, c := range shapeChains(id) {
			want[c+"-"+id] = shapeChainRules
		}
	}
	return want, alts
}

// wantFormat0 is what swanmgr installed before Format 3: every hook looked
// up every shape, and each shape had a chain per hook (the forward one
// with both protected matches).
func wantFormat0(want map[string]int, shapes []string) {
	for _, h := range hooks {
		want[h.name] = len(exemptRules(h.name)) + len(shapes)
		for _, id := range shapes {
			want[h.abbr+"-"+id] = shapeChainRules
			if h.name == "forward" {
				want[h.abbr+"-"+id]++
			}
		}
	}
}

// shapeChainRules is the number of rules of a shape's chain (shapeChain):
// the verdict map, the protected match, the counted drop and the final
// drop.
const shapeChainRules = 4

// blockChainRules is the number of rules of a shape's block chain
// (addShape): the counted drop and the final drop.
const blockChainRules = 2
