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
	// A table of before Format 2 (no vf- maps: forwarded packets were
	// checked by either leg) is what an earlier swanmgr installed; it is
	// intact if it is that whole, and the next change replaces it.
	old := len(shapes) > 0 && !has["vf-"+shapes[0]]
	want := map[string]int{}
	for _, h := range hooks {
		want[h.name] = len(exemptRules(h.name)) + len(shapes)
		if h.name == "forward" && !old && (&objects{shapes: shapes}).ports() {
			want[h.name]++ // defragRule
		}
		for _, id := range shapes {
			want[h.abbr+"-"+id] = shapeChainRules(h.name, old)
		}
	}
	for _, id := range shapes {
		if !has["d-"+id] || !has["v-"+id] || has["vf-"+id] == old {
			return false
		}
		want["b-"+id] = blockChainRules
		if !old {
			for _, c := range []string{"fi-", "fo-", "fb-"} {
				want[c+id] = forwardChainRules
			}
		}
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
// (shapeChain): the verdict map, the protected match, the counted drop
// and the final drop; for forwarded packets the verdict map and the drop.
// Both backends have as many protected matches. old is the layout before
// Format 2, whose forward chain had both protected matches.
func shapeChainRules(hook string, old bool) int {
	switch {
	case hook == "forward" && old:
		return 5
	case hook == "forward":
		return 2
	}
	return 1 + len(protectedRules(Kernel, hook)) + 2
}

// forwardChainRules is the number of rules of each of a shape's fi-, fo-
// and fb- chains (forwardChains).
const forwardChainRules = 2

// blockChainRules is the number of rules of a shape's block chain
// (addShape): the counted drop and the final drop.
const blockChainRules = 2
