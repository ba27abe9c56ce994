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
// table).
func Intact(sets []string, rules map[string]int) bool {
	has := make(map[string]bool, len(sets))
	var shapes []string
	for _, s := range sets {
		has[s] = true
		if id, ok := strings.CutPrefix(s, "k-"); ok {
			shapes = append(shapes, id)
		}
	}
	want := map[string]int{}
	for _, h := range hooks {
		want[h.name] = len(exemptRules(h.name)) + len(shapes)
		for _, id := range shapes {
			want[h.abbr+"-"+id] = shapeChainRules(h.name)
		}
	}
	for _, id := range shapes {
		if !has["d-"+id] || !has["v-"+id] {
			return false
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

// shapeChainRules is the number of rules of a shape's chain for a hook
// (shapeChain): the verdict map, the protected matches, the counted drop
// and the final drop. Both backends have as many protected matches.
func shapeChainRules(hook string) int { return 1 + len(protectedRules(Kernel, hook)) + 2 }

// blockChainRules is the number of rules of a shape's block chain
// (addShape): the counted drop and the final drop.
const blockChainRules = 2
