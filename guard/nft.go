package guard

import (
	"cmp"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// FingerprintSet starts the name of an empty set whose name ends with
// the ruleset's Hash: it tells whether the live table is the ruleset
// swanmgr installed last. Set names can be read over netlink without nft
// loading the table's elements (which costs hundreds of milliseconds at
// thousands of rules).
const FingerprintSet = "fp-"

// The table's two named counters. TrafficCounter counts the packets of
// IKE, NAT-T (libipsec's ESP-in-UDP among them), ESP and AH that its
// hooks let through: charon's traffic on the wire, so while it stands
// still no SA's bytes or packets can have moved (status --watch then need
// not list every SA again to learn that). DroppedCounter counts every
// packet the guard dropped: the drop sets' element counters can only have
// moved when it did.
const (
	TrafficCounter = "ipsec-traffic"
	DroppedCounter = "dropped"
)

// countDropped is the statement before each of the guard's drops.
const countDropped = `counter name "` + DroppedCounter + `" drop`

// hooks are the guard's base chains: the hook, the prefix of its
// per-shape chains, and the direction of the shapes it looks up (0: both,
// in two passes, fwd-o and fwd-i).
var hooks = []struct {
	name string
	hook knftables.BaseChainHook
	abbr string
	dir  byte
}{
	{"output", knftables.OutputHook, "o", out},
	{"input", knftables.InputHook, "i", in},
	{"forward", knftables.ForwardHook, "f", 0},
}

// passes are the chains a forwarded packet goes through, one per
// direction: each looks it up among the shapes of its direction and
// returns unless the packet is dropped.
var passes = []struct {
	name string
	dir  byte
}{{"fwd-o", out}, {"fwd-i", in}}

// Fill adds to tx what turns the live guard table into next, and
// reports whether anything needs to change and whether tx is a patch.
// live is the fingerprint the live table carries ("" when there is none);
// prev is the ruleset swanmgr installed last. When the live table is prev,
// only the differences are sent (a one-rule change to a large policy stays
// cheap): a patch, which deletes prev's fingerprint set and so fails whole
// on any other table; otherwise the table is replaced whole, in the same
// atomic transaction. A nil next removes the table. tx comes from the
// knftables.Interface of table inet swanmgr (objects here name no table).
func Fill(tx *knftables.Transaction, live string, prev, next *Ruleset) (changed, patched bool) {
	if next == nil {
		if live == "" {
			return false, false
		}
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		return true, false
	}
	if prev != nil && prev.Format != Format && prev.Live(live) {
		// A ruleset of an earlier Format whose table this package
		// installed (a rollback put it back): patch from that.
		prev = current(prev)
	}
	next = current(next)
	if live != "" && prev != nil && prev.Format == Format && live == prev.Hash() {
		// Each hash once: a ruleset of 10,000 entries takes about 2 ms.
		nextHash := next.Hash()
		if live == nextHash {
			return false, false
		}
		patch(tx, prev, next, live, nextHash)
		return true, true
	}
	full(tx, next)
	return true, false
}

// objects is a ruleset as nftables objects.
type objects struct {
	rs     *Ruleset
	shapes []string // most specific first
	parsed map[string]shape
	// ranked are the shapes with a block entry or a hole: only a tie
	// with one of them needs its lookups ranked (see lookups).
	ranked map[string]bool
}

func newObjects(rs *Ruleset) *objects {
	var ids []string
	seen := map[string]bool{}
	for _, e := range rs.Entries {
		if !seen[e.Shape] {
			seen[e.Shape] = true
			ids = append(ids, e.Shape)
		}
	}
	o := objectsOf(rs, ids)
	for _, e := range rs.Entries {
		if e.Verdict != Negotiate {
			o.ranked[e.Shape] = true
		}
	}
	return o
}

// objectsOf is the objects of the shapes ids (of rs, which may be nil
// where only their names matter).
func objectsOf(rs *Ruleset, ids []string) *objects {
	if rs == nil {
		rs = &Ruleset{}
	}
	o := &objects{rs: rs, parsed: make(map[string]shape, len(ids)), ranked: map[string]bool{}}
	for _, id := range ids {
		sh, _ := parseShape(familyOf(id), id)
		o.parsed[id] = sh
	}
	o.shapes = slices.Clone(ids)
	slices.SortStableFunc(o.shapes, func(x, y string) int {
		if c := cmp.Compare(o.score(y), o.score(x)); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	return o
}

// score is a shape's score.
func (o *objects) score(id string) int { return o.parsed[id].score() }

func familyOf(id string) int {
	if strings.HasPrefix(id, "6-") {
		return 6
	}
	return 4
}

// dirOf is the direction of a shape, from its name's last part.
func dirOf(id string) byte {
	switch {
	case strings.HasSuffix(id, "-o"):
		return out
	case strings.HasSuffix(id, "-i"):
		return in
	}
	return 0
}

// keyExpr is the packet expression a shape's sets are keyed by, their
// type, and whether they need intervals (a prefix that is neither a host
// nor "any").
func keyExpr(id string) (expr, typ string, interval bool) {
	fam := familyOf(id)
	ip, addr, full := "ip", "ipv4_addr", 32
	if fam == 6 {
		ip, addr, full = "ip6", "ipv6_addr", 128
	}
	s, _ := parseShape(fam, id)
	var e, t []string
	if s.srcBits > 0 {
		e, t = append(e, ip+" saddr"), append(t, addr)
		interval = interval || s.srcBits < full
	}
	if s.dstBits > 0 {
		e, t = append(e, ip+" daddr"), append(t, addr)
		interval = interval || s.dstBits < full
	}
	if s.srcBits == 0 && s.dstBits == 0 {
		e, t = append(e, "meta nfproto"), append(t, "nf_proto")
	}
	if s.proto {
		e, t = append(e, "meta l4proto"), append(t, "inet_proto")
	}
	if s.sport {
		e, t = append(e, "th sport"), append(t, "inet_service")
	}
	if s.dport {
		e, t = append(e, "th dport"), append(t, "inet_service")
	}
	return strings.Join(e, " . "), strings.Join(t, " . "), interval
}

// lookup is the match of a packet in a shape's keys: for a shape bound to
// an interface, the packet must also leave (out) or arrive (in) through
// it.
func (o *objects) lookup(id string) string { return o.lookupIn(id, "k-", nil, "") }

// lookupIn is the match of a packet in the shape's set prefix+id and in
// none of its sets nots (prefixes too), through the interface dev when
// the shape is bound to one ("": the shape's own).
func (o *objects) lookupIn(id, prefix string, nots []string, dev string) string {
	expr, _, _ := keyExpr(id)
	m := expr + " @" + prefix + id
	for _, n := range nots {
		m += " " + expr + " != @" + n + id
	}
	s := o.parsed[id]
	if s.iface == "" {
		return m
	}
	if dev == "" {
		dev = s.iface
	}
	meta := "oifname"
	if s.dir == in {
		meta = "iifname"
	}
	return meta + ` "` + dev + `" ` + m
}

// match is the rules that send a packet found in a shape's set prefix+id
// (and in none of nots) to its chain. On libipsec a packet IPsec protects
// leaves and arrives through ipsec0, not through the interface a rule is
// bound to; with negotiate, such a rule also matches its guarded
// negotiate entries there, so that its protected traffic is not taken for
// a less specific rule's (a block on every interface). Its holes and
// block entries are the bound interface's only.
func (o *objects) match(id, prefix string, nots []string, negotiate bool, chain string) []string {
	out := []string{o.lookupIn(id, prefix, nots, "") + " goto " + chain}
	if s := o.parsed[id]; negotiate && s.iface != "" && s.iface != TunDevice && o.rs.Backend == LibIPsec {
		out = append(out, o.lookupIn(id, "k-", levelSets, TunDevice)+" goto "+chain)
	}
	return out
}

// lookups are the rules that send a packet of direction dir to the chain
// (prefix abbr) of the shape whose entry decides: most specific shape
// first. Equally specific shapes (a tie: `192.0.2.7 → any` and `any →
// me`) are looked up by the rank of their entries, as charon's priorities
// rank two equally specific policies: block entries of any of them
// first, then the holes of permit and unguarded block rules, then
// everything but the holes of guard = false, then those. A tie of shapes
// with negotiate entries only needs no ranking.
func (o *objects) lookups(dir byte, abbr string) []string {
	var out []string
	for _, group := range o.ties(dir) {
		if len(group) == 1 || !slices.ContainsFunc(group, func(id string) bool { return o.ranked[id] }) {
			// One shape, or a tie of negotiate entries only (whichever
			// decides, the verdict is the same): one lookup each.
			for _, id := range group {
				out = append(out, o.match(id, "k-", nil, true, abbr+"-"+id)...)
			}
			continue
		}
		for _, lvl := range []struct {
			set       string
			nots      []string
			negotiate bool
		}{{"k3-", nil, false}, {"k2-", nil, false}, {"k-", []string{"k0-"}, true}, {"k-", nil, false}} {
			for _, id := range group {
				out = append(out, o.match(id, lvl.set, lvl.nots, lvl.negotiate, abbr+"-"+id)...)
			}
		}
	}
	return out
}

// ties are the shapes of direction dir, most specific first, in groups of
// equal specificity (and family).
func (o *objects) ties(dir byte) [][]string {
	var out [][]string
	for _, id := range o.shapes {
		if dirOf(id) != dir {
			continue
		}
		if n := len(out); n > 0 {
			g := out[n-1]
			if familyOf(g[0]) == familyOf(id) && o.score(g[0]) == o.score(id) {
				out[n-1] = append(g, id)
				continue
			}
		}
		out = append(out, []string{id})
	}
	return out
}

// allLookups are the lookups of both directions.
func (o *objects) allLookups() []string {
	return append(o.lookups(out, "o"), o.lookups(in, "i")...)
}

// levelSet is the set, beside k-, that an entry's key is also in, by its
// rank among equally specific entries of other shapes ("" for a guarded
// negotiate entry).
func levelSet(e Entry) string {
	switch {
	case e.Verdict == Block:
		return "k3-"
	case e.Verdict == Pass && e.Low:
		return "k0-"
	case e.Verdict == Pass:
		return "k2-"
	}
	return ""
}

// levelSets are the prefixes of a shape's rank sets.
var levelSets = []string{"k3-", "k2-", "k0-"}

// protected matches, for a shape's direction, a packet IPsec protects:
// going out, that it leaves protected; coming in, that it arrived so.
func protected(b Backend, dir byte) string {
	if dir == out {
		return outProtected(b)
	}
	return inProtected(b)
}

// inProtected matches a packet that arrived through IPsec; outProtected
// one that leaves through it.
func inProtected(b Backend) string {
	if b == LibIPsec {
		return `iifname "` + TunDevice + `"`
	}
	return "meta ipsec exists"
}

func outProtected(b Backend) string {
	if b == LibIPsec {
		return `oifname "` + TunDevice + `"`
	}
	return "rt ipsec exists"
}

// exemptRules let through, on every hook, what the guard must never stop:
// loopback, IKE and NAT-T (the ESP-in-UDP of libipsec among them), ESP
// and AH, and IPv6 neighbour discovery; what IPsec sends is counted
// (TrafficCounter).
func exemptRules(hook string) []string {
	var out []string
	switch hook {
	case "output":
		out = append(out, `oifname "lo" accept`)
	case "input":
		out = append(out, `iifname "lo" accept`)
	}
	const counted = ` counter name "` + TrafficCounter + `" accept`
	return append(out,
		"meta l4proto { esp, ah }"+counted,
		"udp sport { 500, 4500 }"+counted,
		"udp dport { 500, 4500 }"+counted,
		"icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept",
	)
}

func ptr[T any](v T) *T { return &v }

// verdictOf is what an entry's verdict map says: a hole returns (on
// output and input the base chain then accepts; a forwarded packet goes on
// to the other direction's pass), a block entry drops and counts, a
// negotiate entry goes on to the protected match.
func verdictOf(e Entry) string {
	switch e.Verdict {
	case Block:
		return "goto b-" + e.Shape
	case Negotiate:
		return "continue"
	}
	return "return"
}

// baseChains adds the three base chains and the forward passes, and their
// rules.
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
	}
	for _, p := range passes {
		c := &knftables.Chain{Name: p.name}
		if create {
			tx.Add(c)
		} else {
			tx.Flush(c)
		}
		for _, r := range o.lookups(p.dir, "f") {
			tx.Add(&knftables.Rule{Chain: p.name, Rule: r})
		}
	}
	for _, h := range hooks {
		if h.name == "forward" && o.ports() {
			tx.Add(&knftables.Rule{Chain: h.name, Rule: defragRule, Comment: ptr(defragComment)})
		}
		for _, r := range exemptRules(h.name) {
			tx.Add(&knftables.Rule{Chain: h.name, Rule: r})
		}
		if h.dir == 0 {
			for _, p := range passes {
				tx.Add(&knftables.Rule{Chain: h.name, Rule: "jump " + p.name})
			}
			continue
		}
		for _, r := range o.lookups(h.dir, h.abbr) {
			tx.Add(&knftables.Rule{Chain: h.name, Rule: r})
		}
	}
}

// defragRule makes the kernel reassemble forwarded IP fragments before
// the guard sees them, where a shape restricts ports: a fragment after
// the first carries no ports, so no port-restricted entry matches it and
// it went on in clear while the first was dropped. Nothing reassembles a
// forwarded packet unless conntrack runs in the namespace, and a rule
// that reads conntrack's state starts it there (with its
// defragmentation, for both families), as any stateful firewall's does.
// The rule itself only counts invalid packets.
const (
	defragRule    = "ct state invalid counter"
	defragComment = "swanmgr: conntrack reassembles forwarded fragments before ports are matched"
)

// ports says whether a shape restricts ports.
func (o *objects) ports() bool {
	for _, id := range o.shapes {
		if s, err := parseShape(familyOf(id), id); err == nil && s.ports() {
			return true
		}
	}
	return false
}

// counting declares a set whose every element counts the packets that
// matched it (nft's "counter" set option; knftables has no field for it,
// so it follows the type).
func counting(typ string) string { return typ + " ; counter" }

// addShape adds a shape's sets, map and chains (empty of elements): k-
// holds every key, v- maps it to a verdict, d- holds the keys of block
// and negotiate entries, each element with the rule's counter name as its
// comment and a counter of the packets dropped for it.
func (o *objects) addShape(tx *knftables.Transaction, id string) {
	expr, typ, interval := keyExpr(id)
	var flags []knftables.SetFlag
	if interval {
		flags = []knftables.SetFlag{knftables.IntervalFlag}
	}
	tx.Add(&knftables.Set{Name: "k-" + id, Type: typ, Flags: flags})
	for _, l := range levelSets {
		tx.Add(&knftables.Set{Name: l + id, Type: typ, Flags: flags})
	}
	tx.Add(&knftables.Set{Name: "d-" + id, Type: counting(typ), Flags: flags})
	tx.Add(&knftables.Chain{Name: "b-" + id})
	tx.Add(&knftables.Rule{Chain: "b-" + id, Rule: expr + " @d-" + id + " " + countDropped})
	tx.Add(&knftables.Rule{Chain: "b-" + id, Rule: countDropped})
	tx.Add(&knftables.Map{Name: "v-" + id, Type: typ + " : verdict", Flags: flags})
	for _, c := range shapeChains(id) {
		o.shapeChain(tx, id, c, false)
	}
}

// shapeChains are the prefixes of a shape's chains: the hook of its
// direction, and the forward pass.
func shapeChains(id string) []string {
	if dirOf(id) == out {
		return []string{"o", "f"}
	}
	return []string{"i", "f"}
}

// shapeChain writes one of a shape's chains: the verdict of the entry;
// for negotiate entries, protected packets pass (on output and input
// accepted, forwarded ones on to the other direction) and the rest are
// counted and dropped.
func (o *objects) shapeChain(tx *knftables.Transaction, id, abbr string, flush bool) {
	expr, _, _ := keyExpr(id)
	c := abbr + "-" + id
	if flush {
		tx.Flush(&knftables.Chain{Name: c})
	} else {
		tx.Add(&knftables.Chain{Name: c})
	}
	pass := " accept"
	if abbr == "f" {
		pass = " return"
	}
	tx.Add(&knftables.Rule{Chain: c, Rule: expr + " vmap @v-" + id})
	tx.Add(&knftables.Rule{Chain: c, Rule: protected(o.rs.Backend, dirOf(id)) + pass})
	tx.Add(&knftables.Rule{Chain: c, Rule: expr + " @d-" + id + " " + countDropped})
	tx.Add(&knftables.Rule{Chain: c, Rule: countDropped})
}

// deleteShape removes a shape's objects; the base chains must no longer
// refer to them.
func deleteShape(tx *knftables.Transaction, id string) {
	for _, abbr := range shapeChains(id) {
		c := &knftables.Chain{Name: abbr + "-" + id}
		tx.Flush(c)
		tx.Delete(c)
	}
	tx.Delete(&knftables.Map{Name: "v-" + id})
	tx.Flush(&knftables.Chain{Name: "b-" + id})
	tx.Delete(&knftables.Chain{Name: "b-" + id})
	tx.Delete(&knftables.Set{Name: "d-" + id})
	for _, l := range levelSets {
		tx.Delete(&knftables.Set{Name: l + id})
	}
	tx.Delete(&knftables.Set{Name: "k-" + id})
}

func addEntry(tx *knftables.Transaction, e Entry) {
	tx.Add(&knftables.Element{Set: "k-" + e.Shape, Key: e.Key})
	addVerdict(tx, e)
}

// addVerdict adds what an entry does (its key is in k- already).
func addVerdict(tx *knftables.Transaction, e Entry) {
	tx.Add(&knftables.Element{Map: "v-" + e.Shape, Key: e.Key, Value: []string{verdictOf(e)}})
	if l := levelSet(e); l != "" {
		tx.Add(&knftables.Element{Set: l + e.Shape, Key: e.Key})
	}
	if e.Counter != "" {
		tx.Add(&knftables.Element{Set: "d-" + e.Shape, Key: e.Key, Comment: ptr(e.Counter)})
	}
}

func deleteEntry(tx *knftables.Transaction, e Entry, keepKey bool) {
	if !keepKey {
		tx.Delete(&knftables.Element{Set: "k-" + e.Shape, Key: e.Key})
	}
	tx.Delete(&knftables.Element{Map: "v-" + e.Shape, Key: e.Key})
	if l := levelSet(e); l != "" {
		tx.Delete(&knftables.Element{Set: l + e.Shape, Key: e.Key})
	}
	if e.Counter != "" {
		tx.Delete(&knftables.Element{Set: "d-" + e.Shape, Key: e.Key})
	}
}

// full replaces whatever table is there with rs, atomically.
func full(tx *knftables.Transaction, rs *Ruleset) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{
		Comment: ptr("swanmgr's IPsec guard: drops clear text that the assigned policy protects; managed by swanmgr")})
	o := newObjects(rs)
	tx.Add(&knftables.Set{Name: FingerprintSet + rs.Hash(), Type: "ipv4_addr"})
	tx.Add(&knftables.Counter{Name: TrafficCounter})
	tx.Add(&knftables.Counter{Name: DroppedCounter})
	for _, id := range o.shapes {
		o.addShape(tx, id)
	}
	for _, e := range rs.Entries {
		addEntry(tx, e)
	}
	o.baseChains(tx, true)
}

// patch turns prev (live) into next; prevHash and nextHash are their
// Hash.
func patch(tx *knftables.Transaction, prev, next *Ruleset, prevHash, nextHash string) {
	po, no := newObjects(prev), newObjects(next)
	prevShapes, nextShapes := map[string]bool{}, map[string]bool{}
	for _, id := range po.shapes {
		prevShapes[id] = true
	}
	for _, id := range no.shapes {
		nextShapes[id] = true
	}
	for _, id := range no.shapes {
		if !prevShapes[id] {
			no.addShape(tx, id)
		}
	}
	patchEntries(tx, prev, next, nextShapes)
	if prev.Backend != next.Backend {
		// The per-shape chains that stay test protection the old way.
		for _, id := range no.shapes {
			if prevShapes[id] {
				for _, c := range shapeChains(id) {
					no.shapeChain(tx, id, c, true)
				}
			}
		}
	}
	if !slices.Equal(po.allLookups(), no.allLookups()) {
		// The base chains are their lookups, which follow the shapes
		// (and the defragmentation rule with them), the backend (shapes
		// bound to an interface) and which ties are ranked.
		no.baseChains(tx, false)
	}
	tx.Delete(&knftables.Set{Name: FingerprintSet + prevHash})
	tx.Add(&knftables.Set{Name: FingerprintSet + nextHash, Type: "ipv4_addr"})
	for _, id := range po.shapes {
		if !nextShapes[id] {
			deleteShape(tx, id)
		}
	}
}

// patchEntries adds to tx what turns prev's entries into next's, in the
// shapes next has (deletions first: a changed entry is deleted and added
// again; a shape that goes takes its elements with it).
func patchEntries(tx *knftables.Transaction, prev, next *Ruleset, nextShapes map[string]bool) {
	if sortedUnique(prev.Entries) && sortedUnique(next.Entries) {
		patchWalk(tx, prev, next, nextShapes)
	} else {
		patchByID(tx, prev, next, nextShapes)
	}
}

// patchWalk is patchEntries for sortedUnique rulesets (every ruleset
// swanmgr makes): the commands patchByID sends, in its order, from two
// walks instead of IDs and maps.
func patchWalk(tx *knftables.Transaction, prev, next *Ruleset, nextShapes map[string]bool) {
	walkEntries(prev.Entries, next.Entries, func(e, n *Entry) {
		switch {
		case e == nil:
		case n == nil:
			if nextShapes[e.Shape] {
				deleteEntry(tx, *e, false)
			}
		case !n.SameAction(*e):
			deleteEntry(tx, *e, true)
		}
	})
	walkEntries(prev.Entries, next.Entries, func(o, e *Entry) {
		switch {
		case e == nil:
		case o == nil:
			addEntry(tx, *e)
		case !o.SameAction(*e):
			addVerdict(tx, *e)
		}
	})
}

// patchByID is patchEntries for rulesets that are not sortedUnique.
func patchByID(tx *knftables.Transaction, prev, next *Ruleset, nextShapes map[string]bool) {
	prevIDs, nextIDs := entryIDs(prev.Entries), entryIDs(next.Entries)
	old := make(map[string]int, len(prev.Entries))
	for i, id := range prevIDs {
		old[id] = i
	}
	want := make(map[string]int, len(next.Entries))
	for i, id := range nextIDs {
		want[id] = i
	}
	// Deletions first (a changed entry is deleted and added again), in
	// shapes that stay; a shape that goes takes its elements with it.
	for i, e := range prev.Entries {
		if !nextShapes[e.Shape] {
			continue
		}
		j, ok := want[prevIDs[i]]
		var n Entry
		if ok {
			n = next.Entries[j]
		}
		switch {
		case !ok:
			deleteEntry(tx, e, false)
		case !n.SameAction(e):
			deleteEntry(tx, e, true)
		}
	}
	for i, e := range next.Entries {
		j, ok := old[nextIDs[i]]
		var o Entry
		if ok {
			o = prev.Entries[j]
		}
		switch {
		case !ok:
			addEntry(tx, e)
		case !o.SameAction(e):
			addVerdict(tx, e)
		}
	}
}
