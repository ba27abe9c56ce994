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
		return intactAs(want, shapes, has, rules)
	}
	// The rule counts of a shape bound to an interface depend on the
	// backend, which the table does not say: either will do.
	for _, b := range []Backend{Kernel, LibIPsec} {
		want := map[string]int{}
		wantFormat3(want, shapes, b)
		if intactAs(want, shapes, has, rules) {
			return true
		}
	}
	return false
}

// intactAs says whether the table has the sets of shapes and the rule
// counts want (b- chains added here).
func intactAs(want map[string]int, shapes []string, has map[string]bool, rules map[string]int) bool {
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
		if got, ok := rules[chain]; !ok || got != n {
			return false
		}
	}
	return true
}

func wantFormat3(want map[string]int, shapes []string, b Backend) {
	o := objectsOf(&Ruleset{Backend: b}, shapes)
	for _, h := range hooks {
		want[h.name] = len(exemptRules(h.name)) + len(o.lookups(h.dir, h.abbr))
		if h.dir == 0 {
			want[h.name] = len(exemptRules(h.name)) + len(passes)
			if o.ports() {
				want[h.name]++ // defragRule
			}
		}
	}
	for _, p := range passes {
		want[p.name] = len(o.lookups(p.dir, "f"))
	}
	for _, id := range shapes {
		for _, c := range shapeChains(id) {
			want[c+"-"+id] = shapeChainRules
		}
	}
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
