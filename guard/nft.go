package guard

import (
	"sort"
	"strings"

	"sigs.k8s.io/knftables"
)

// FingerprintPrefix starts the comment of the first rule of the guard's
// output chain; the ruleset's Hash follows. It tells whether the live
// table is the ruleset swanmgr installed last, without listing it.
const FingerprintPrefix = "swanmgr guard "

// FingerprintChain is the chain whose first rule carries the fingerprint.
const FingerprintChain = "output"

// hooks are the guard's base chains: the hook and the prefix of its
// per-shape chains.
var hooks = []struct {
	name string
	hook knftables.BaseChainHook
	abbr string
}{
	{"output", knftables.OutputHook, "o"},
	{"input", knftables.InputHook, "i"},
	{"forward", knftables.ForwardHook, "f"},
}

// Fill adds to tx what turns the live guard table into next, and
// reports whether anything needs to change. live is the fingerprint the
// live table carries ("" when there is none); prev is the ruleset swanmgr
// installed last. When the live table is prev, only the differences are
// sent (a one-rule change to a large policy stays cheap); otherwise the
// table is replaced whole, in the same atomic transaction. A nil next
// removes the table. tx comes from the knftables.Interface of table inet
// swanmgr (objects here name no table).
func Fill(tx *knftables.Transaction, live string, prev, next *Ruleset) bool {
	if next == nil {
		if live == "" {
			return false
		}
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		return true
	}
	if live != "" && prev != nil && live == prev.Hash() {
		if live == next.Hash() {
			return false
		}
		patch(tx, prev, next)
		return true
	}
	full(tx, next)
	return true
}

// objects is a ruleset as nftables objects.
type objects struct {
	rs       *Ruleset
	shapes   []string // family|shape, most specific first
	counters []string
}

func newObjects(rs *Ruleset) *objects {
	o := &objects{rs: rs}
	seen := map[string]bool{}
	type sh struct {
		id    string
		score int
	}
	var shs []sh
	for _, e := range rs.Entries {
		id := shapeID(e.Family, e.Shape)
		if seen[id] {
			continue
		}
		seen[id] = true
		s, err := parseShape(e.Family, e.Shape)
		score := 0
		if err == nil {
			score = s.score()
		}
		shs = append(shs, sh{id, score})
	}
	sort.SliceStable(shs, func(i, j int) bool {
		if shs[i].score != shs[j].score {
			return shs[i].score > shs[j].score
		}
		return shs[i].id < shs[j].id
	})
	for _, s := range shs {
		o.shapes = append(o.shapes, s.id)
	}
	cs := map[string]bool{}
	for _, r := range rs.Rules {
		if r.Counter != "" && !cs[r.Counter] {
			cs[r.Counter] = true
			o.counters = append(o.counters, r.Counter)
		}
	}
	return o
}

// shapeID names a shape across families: the shape name starts with its
// family.
func shapeID(_ int, shape string) string { return shape }

func familyOf(id string) int {
	if strings.HasPrefix(id, "6-") {
		return 6
	}
	return 4
}

// keyExpr is the packet expression a shape's sets are keyed by, and
// keyType their type.
func keyExpr(id string) (expr, typ string) {
	fam := familyOf(id)
	ip, addr := "ip", "ipv4_addr"
	if fam == 6 {
		ip, addr = "ip6", "ipv6_addr"
	}
	s, _ := parseShape(fam, id)
	expr = ip + " saddr . " + ip + " daddr"
	typ = addr + " . " + addr
	if s.proto {
		expr += " . meta l4proto"
		typ += " . inet_proto"
		if s.ports() {
			expr += " . th sport . th dport"
			typ += " . inet_service . inet_service"
		}
	}
	return expr, typ
}

// protectedRules are the matches, per hook, of a packet IPsec protects.
func protectedRules(b Backend, hook string) []string {
	if b == LibIPsec {
		switch hook {
		case "output":
			return []string{`oifname "` + TunDevice + `" accept`}
		case "input":
			return []string{`iifname "` + TunDevice + `" accept`}
		}
		return []string{`iifname "` + TunDevice + `" accept`, `oifname "` + TunDevice + `" accept`}
	}
	switch hook {
	case "output":
		return []string{"rt ipsec exists accept"}
	case "input":
		return []string{"meta ipsec exists accept"}
	}
	return []string{"meta ipsec exists accept", "rt ipsec exists accept"}
}

// exemptRules let through, on every hook, what the guard must never stop:
// loopback, IKE and NAT-T (the ESP-in-UDP of libipsec among them), ESP
// and AH, and IPv6 neighbour discovery.
func exemptRules(hook string) []string {
	var out []string
	switch hook {
	case "output":
		out = append(out, `oifname "lo" accept`)
	case "input":
		out = append(out, `iifname "lo" accept`)
	}
	return append(out,
		"meta l4proto { esp, ah } accept",
		"udp sport { 500, 4500 } accept",
		"udp dport { 500, 4500 } accept",
		"icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept",
	)
}

func ptr[T any](v T) *T { return &v }

func verdictOf(e Entry) string {
	switch e.Verdict {
	case Block:
		return "goto b-" + e.Shape
	case Negotiate:
		return "continue"
	}
	return "accept"
}

// baseChains adds the three base chains and their rules.
func (o *objects) baseChains(tx *knftables.Transaction, create bool) {
	for _, h := range hooks {
		c := &knftables.Chain{Name: h.name}
		if create {
			c.Type = ptr(knftables.FilterType)
			c.Hook = ptr(h.hook)
			c.Priority = ptr(knftables.FilterPriority)
			c.Policy = ptr(knftables.AcceptPolicy)
			tx.Add(c)
		} else {
			tx.Flush(c)
		}
		for i, r := range exemptRules(h.name) {
			rule := &knftables.Rule{Chain: h.name, Rule: r}
			if i == 0 && h.name == FingerprintChain {
				rule.Comment = ptr(FingerprintPrefix + o.rs.Hash())
			}
			tx.Add(rule)
		}
		for _, id := range o.shapes {
			expr, _ := keyExpr(id)
			tx.Add(&knftables.Rule{Chain: h.name, Rule: expr + " @k-" + id + " goto " + h.abbr + "-" + id})
		}
	}
}

// addShape adds a shape's sets, maps and chains (empty of elements).
func (o *objects) addShape(tx *knftables.Transaction, id string) {
	expr, typ := keyExpr(id)
	flags := []knftables.SetFlag{knftables.IntervalFlag}
	tx.Add(&knftables.Set{Name: "k-" + id, Type: typ, Flags: flags})
	tx.Add(&knftables.Map{Name: "c-" + id, Type: typ + " : counter", Flags: flags})
	tx.Add(&knftables.Chain{Name: "b-" + id})
	tx.Add(&knftables.Rule{Chain: "b-" + id, Rule: "counter name " + expr + " map @c-" + id + " drop"})
	tx.Add(&knftables.Map{Name: "v-" + id, Type: typ + " : verdict", Flags: flags})
	for _, h := range hooks {
		c := h.abbr + "-" + id
		tx.Add(&knftables.Chain{Name: c})
		tx.Add(&knftables.Rule{Chain: c, Rule: expr + " vmap @v-" + id})
		for _, r := range protectedRules(o.rs.Backend, h.name) {
			tx.Add(&knftables.Rule{Chain: c, Rule: r})
		}
		tx.Add(&knftables.Rule{Chain: c, Rule: "counter name " + expr + " map @c-" + id + " drop"})
	}
}

// deleteShape removes a shape's objects; the base chains must no longer
// refer to them.
func deleteShape(tx *knftables.Transaction, id string) {
	for _, h := range hooks {
		c := &knftables.Chain{Name: h.abbr + "-" + id}
		tx.Flush(c)
		tx.Delete(c)
	}
	tx.Delete(&knftables.Map{Name: "v-" + id})
	tx.Flush(&knftables.Chain{Name: "b-" + id})
	tx.Delete(&knftables.Chain{Name: "b-" + id})
	tx.Delete(&knftables.Map{Name: "c-" + id})
	tx.Delete(&knftables.Set{Name: "k-" + id})
}

func addEntry(tx *knftables.Transaction, e Entry) {
	tx.Add(&knftables.Element{Set: "k-" + e.Shape, Key: e.Key})
	tx.Add(&knftables.Element{Map: "v-" + e.Shape, Key: e.Key, Value: []string{verdictOf(e)}})
	if e.Counter != "" {
		tx.Add(&knftables.Element{Map: "c-" + e.Shape, Key: e.Key, Value: []string{`"` + e.Counter + `"`}})
	}
}

func deleteEntry(tx *knftables.Transaction, e Entry, keepKey bool) {
	if !keepKey {
		tx.Delete(&knftables.Element{Set: "k-" + e.Shape, Key: e.Key})
	}
	tx.Delete(&knftables.Element{Map: "v-" + e.Shape, Key: e.Key})
	if e.Counter != "" {
		tx.Delete(&knftables.Element{Map: "c-" + e.Shape, Key: e.Key})
	}
}

// full replaces whatever table is there with rs, atomically.
func full(tx *knftables.Transaction, rs *Ruleset) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{
		Comment: ptr("swanmgr's IPsec guard: drops clear text that the assigned policy protects; managed by swanmgr")})
	o := newObjects(rs)
	for _, c := range o.counters {
		tx.Add(&knftables.Counter{Name: c})
	}
	for _, id := range o.shapes {
		o.addShape(tx, id)
	}
	for _, e := range rs.Entries {
		addEntry(tx, e)
	}
	o.baseChains(tx, true)
}

// patch turns prev (live) into next.
func patch(tx *knftables.Transaction, prev, next *Ruleset) {
	po, no := newObjects(prev), newObjects(next)
	inSlice := func(xs []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	prevCounters, nextCounters := inSlice(po.counters), inSlice(no.counters)
	prevShapes, nextShapes := inSlice(po.shapes), inSlice(no.shapes)
	for _, c := range no.counters {
		if !prevCounters[c] {
			tx.Add(&knftables.Counter{Name: c})
		}
	}
	for _, id := range no.shapes {
		if !prevShapes[id] {
			no.addShape(tx, id)
		}
	}
	old := map[string]Entry{}
	for _, e := range prev.Entries {
		old[e.id()] = e
	}
	want := map[string]Entry{}
	for _, e := range next.Entries {
		want[e.id()] = e
	}
	// Deletions first (a changed entry is deleted and added again), in
	// shapes that stay; a shape that goes takes its elements with it.
	for _, e := range prev.Entries {
		if !nextShapes[e.Shape] {
			continue
		}
		n, ok := want[e.id()]
		switch {
		case !ok:
			deleteEntry(tx, e, false)
		case n.Verdict != e.Verdict || n.Counter != e.Counter:
			deleteEntry(tx, e, true)
		}
	}
	for _, e := range next.Entries {
		o, ok := old[e.id()]
		switch {
		case !ok:
			addEntry(tx, e)
		case o.Verdict != e.Verdict || o.Counter != e.Counter:
			tx.Add(&knftables.Element{Map: "v-" + e.Shape, Key: e.Key, Value: []string{verdictOf(e)}})
			if e.Counter != "" {
				tx.Add(&knftables.Element{Map: "c-" + e.Shape, Key: e.Key, Value: []string{`"` + e.Counter + `"`}})
			}
		}
	}
	backendChanged := prev.Backend != next.Backend
	if backendChanged {
		// The per-shape chains that stay test protection the old way.
		for _, id := range no.shapes {
			if !prevShapes[id] {
				continue
			}
			expr, _ := keyExpr(id)
			for _, h := range hooks {
				c := h.abbr + "-" + id
				tx.Flush(&knftables.Chain{Name: c})
				tx.Add(&knftables.Rule{Chain: c, Rule: expr + " vmap @v-" + id})
				for _, r := range protectedRules(next.Backend, h.name) {
					tx.Add(&knftables.Rule{Chain: c, Rule: r})
				}
				tx.Add(&knftables.Rule{Chain: c, Rule: "counter name " + expr + " map @c-" + id + " drop"})
			}
		}
	}
	no.baseChains(tx, false)
	for _, id := range po.shapes {
		if !nextShapes[id] {
			deleteShape(tx, id)
		}
	}
	for _, c := range po.counters {
		if !nextCounters[c] {
			tx.Delete(&knftables.Counter{Name: c})
		}
	}
}
