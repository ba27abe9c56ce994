package guard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unsafe"
	"weak"

	"github.com/swanmgr/swanmgr/internal/kept"
	"github.com/swanmgr/swanmgr/internal/slug"
	"github.com/swanmgr/swanmgr/model"
)

// Table is the nftables table the guard owns (family inet).
const Table = "swanmgr"

// TunDevice is the TUN device charon's kernel-libipsec plugin creates.
const TunDevice = "ipsec0"

// Backend is how IPsec is done on the host, which decides what
// "protected" means. The names are render's.
type Backend string

// Backends.
const (
	Kernel   Backend = "kernel"
	LibIPsec Backend = "libipsec"
)

// Verdict is what the guard does with a packet that matches an entry.
type Verdict string

// Verdicts, strongest first.
const (
	// Block drops the packet.
	Block Verdict = "block"
	// Negotiate lets the packet through only when IPsec protects it.
	Negotiate Verdict = "negotiate"
	// Pass lets the packet through: a permit rule, or a rule whose filter
	// action opted out of the guard. It keeps less specific rules from
	// applying to it.
	Pass Verdict = "pass"
)

func (v Verdict) strength() int {
	switch v {
	case Block:
		return 2
	case Negotiate:
		return 1
	}
	return 0
}

// Rule is one rule of the policy the guard enforces.
type Rule struct {
	Name    string  `json:"name"`    // the rule's name in the policy
	Counter string  `json:"counter"` // names its drop entries (their comment) in the table
	Verdict Verdict `json:"verdict"`
}

// Entry is one match of the guard: one orientation of one filter, in one
// address family.
type Entry struct {
	Family int    `json:"family"` // 4 or 6
	Shape  string `json:"shape"`  // see shape
	// Key holds the parts of the set key as nft writes them, only what
	// the shape restricts: source and destination address or prefix
	// (left out for "any"; "ipv4" or "ipv6" when both are), protocol
	// number, source port, destination port.
	Key     []string `json:"key"`
	Verdict Verdict  `json:"verdict"`
	Counter string   `json:"counter,omitempty"` // block and negotiate
	// Low marks the hole of a negotiate rule whose filter action says
	// guard = false: where equally specific entries of two shapes match
	// one packet, it loses to a guarded negotiate entry, which a hole of
	// a permit or an unguarded block rule beats (rank).
	Low bool `json:"low,omitempty"`
}

// SameAction says whether e and o, entries of one ID, do the same to a
// packet: verdict, counter and rank among holes.
func (e Entry) SameAction(o Entry) bool {
	return e.Verdict == o.Verdict && e.Counter == o.Counter && e.Low == o.Low
}

// Format is the layout of the table this package installs; a ruleset
// recorded with another is replaced whole rather than patched. Format 0,
// before 2026-12-03: shapes of both directions, every hook looked up all
// of them, and a forwarded packet passed when either leg was protected.
// Format 3: every shape is of one direction (see shape), each hook looks up
// the directions charon's policies of that hook cover, as the kernel's
// out, in and fwd policies do, and a shape may be bound to an interface.
// (Format 2 was a layout of the same day that never shipped; its records,
// of shapes without a direction, are converted like Format 0's.)
// Format 4: Format 3's entries and chains, with two named counters that
// total what the table saw (see Traffic and Dropped): its records are
// Format 3's and a table of Format 3 is replaced whole by the next change.
const Format = 4

// ID identifies an entry: its family, shape and key.
func (e Entry) ID() string {
	n := 4 + len(e.Shape)
	for _, k := range e.Key {
		n += len(k) + 3
	}
	b := make([]byte, 0, n)
	b = strconv.AppendInt(b, int64(e.Family), 10)
	b = append(b, '|')
	b = append(b, e.Shape...)
	b = append(b, '|')
	for i, k := range e.Key {
		if i > 0 {
			b = append(b, " . "...)
		}
		b = append(b, k...)
	}
	return string(b)
}

// Ruleset is the whole guard of one assigned policy. A nil *Ruleset is
// "no guard".
type Ruleset struct {
	Format  int     `json:"format,omitempty"` // see Format
	Backend Backend `json:"backend"`
	Rules   []Rule  `json:"rules"`
	Entries []Entry `json:"entries"` // sorted by shape, then key
}

// Hash identifies a ruleset's content; the live table carries it.
//
// A large ruleset's hash is kept for it (hashes): an apply asks for the
// hashes of its three rulesets some seven times, 2 ms each at 10,000
// entries. A ruleset is never changed once made (Derive, Merge and the
// readers of the record make new ones); one whose fields or lists are set
// anew is hashed again.
func (rs *Ruleset) Hash() string {
	if rs == nil {
		return ""
	}
	if len(rs.Entries) < hashKeptFrom {
		return rs.hash()
	}
	of := hashedOf{format: rs.Format, backend: rs.Backend,
		rules: weak.Make(unsafe.SliceData(rs.Rules)), nRules: len(rs.Rules),
		entries: weak.Make(unsafe.SliceData(rs.Entries)), nEntries: len(rs.Entries)}
	if h, ok := hashes.Get(of); ok {
		return h
	}
	h := rs.hash()
	hashes.Put(of, h)
	return h
}

// hashKeptFrom is the number of entries from which a hash is kept.
const hashKeptFrom = 256

// hashedOf is what a kept hash is of: a ruleset's fields, and which lists
// (weak pointers: a list collected and another made where it was are not
// the same).
type hashedOf struct {
	format   int
	backend  Backend
	rules    weak.Pointer[Rule]
	nRules   int
	entries  weak.Pointer[Entry]
	nEntries int
}

// hashes are the last few hashes made (an apply's three rulesets, the
// agent's between applies).
var hashes kept.Ring[hashedOf, string]

// hash is Hash, made.
func (rs *Ruleset) hash() string {
	// Length-prefixed fields straight into the hash: a ruleset of 10,000
	// entries is hashed several times per apply, and JSON would cost more
	// than the nft transaction it guards.
	h := sha256.New()
	// Written in blocks of some kilobytes: a write per entry cost more
	// than the hashing.
	buf := make([]byte, 0, 16<<10)
	flush := func() {
		if len(buf) > 15<<10 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	put := func(v string) {
		buf = strconv.AppendInt(buf, int64(len(v)), 10)
		buf = append(buf, ':')
		buf = append(buf, v...)
	}
	put(string(rs.Backend))
	if rs.Format != 0 {
		// Left out for rulesets of before, so that their hash, which
		// the live table carries, reads the same.
		buf = append(buf, 'F')
		buf = strconv.AppendInt(buf, int64(rs.Format), 10)
	}
	for _, r := range rs.Rules {
		buf = append(buf, 'r')
		put(r.Name)
		put(r.Counter)
		put(string(r.Verdict))
		flush()
	}
	for _, e := range rs.Entries {
		buf = append(buf, 'e')
		buf = strconv.AppendInt(buf, int64(e.Family), 10)
		put(e.Shape)
		buf = strconv.AppendInt(buf, int64(len(e.Key)), 10)
		for _, k := range e.Key {
			put(k)
		}
		put(string(e.Verdict))
		put(e.Counter)
		if e.Low {
			buf = append(buf, 'L')
		}
		flush()
	}
	if len(rs.Rules)+len(rs.Entries) > 0 {
		// (A ruleset of neither has always hashed as nothing at all.)
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Guarded returns the rules whose drops the guard counts (block and
// negotiate), in policy order.
func (rs *Ruleset) Guarded() []Rule {
	if rs == nil {
		return nil
	}
	var out []Rule
	for _, r := range rs.Rules {
		if r.Verdict != Pass {
			out = append(out, r)
		}
	}
	return out
}

// Rule returns the guarded rule named name, or nil.
func (rs *Ruleset) Rule(name string) *Rule {
	if rs == nil {
		return nil
	}
	for i := range rs.Rules {
		if rs.Rules[i].Name == name && rs.Rules[i].Verdict != Pass {
			return &rs.Rules[i]
		}
	}
	return nil
}

// Derive computes the guard of an assigned policy for a backend. It
// returns nil when no enabled rule is guarded: then nothing is installed
// and nftables is not needed. Problems name the rule and the filter.
func Derive(a *model.Assigned, backend Backend) (*Ruleset, model.Problems) {
	guarded := false
	for _, r := range a.Rules {
		if r.Action.Guard {
			guarded = true
		}
	}
	if !guarded {
		return nil, nil
	}
	// Most rules give an out and an in entry.
	d := &deriver{a: a, rs: &Ruleset{Format: Format, Backend: backend, Entries: make([]Entry, 0, 2*len(a.Rules))}, byID: make(map[string]int, 2*len(a.Rules)),
		counters: make(map[string]bool, len(a.Rules)), texts: map[netip.Prefix]string{}, shapes: map[shape]string{}, ranks: make([]int, 0, 2*len(a.Rules))}
	for _, r := range a.Rules {
		d.rule(r)
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	// IDs are unique (byID), so the quicker unstable sort gives
	// sortEntries' order.
	slices.SortFunc(d.rs.Entries, compareEntries)
	if len(d.rs.Entries) == 0 {
		d.rs.Entries = nil
	}
	return d.rs, nil
}

type deriver struct {
	a        *model.Assigned
	rs       *Ruleset
	byID     map[string]int // entry id -> index in rs.Entries
	counters map[string]bool
	errs     model.Problems
	texts    map[netip.Prefix]string // prefixText of the first prefixes seen
	shapes   map[shape]string        // shape names made
	ranks    []int                   // rank of each entry of rs.Entries
}

// counterName names a rule's counter after the rule, so that it survives
// applies that do not change the rule.
func (d *deriver) counterName(r model.ResolvedRule) string {
	s := slug.Make(r.Name)
	if s == "" {
		s = "rule" + strconv.Itoa(r.Index+1)
	}
	name := "r-" + s
	for i := 2; d.counters[name]; i++ {
		name = "r-" + s + "-" + strconv.Itoa(i)
	}
	d.counters[name] = true
	return name
}

func (d *deriver) rule(r model.ResolvedRule) {
	v := Pass
	switch {
	case !r.Action.Guard:
	case r.Action.Action == model.Block:
		v = Block
	case r.Action.Action == model.Negotiate:
		v = Negotiate
	}
	rule := Rule{Name: r.Name, Verdict: v}
	if v != Pass {
		rule.Counter = d.counterName(r)
	}
	d.rs.Rules = append(d.rs.Rules, rule)
	for _, f := range r.Filters {
		if f.Src.Kind == model.AddrDNS || f.Dst.Kind == model.AddrDNS {
			if v == Pass {
				// A hole for a name nobody resolved yet: leaving it out
				// only makes the guard stricter.
				continue
			}
			d.errs = append(d.errs, d.a.File.Problem(f.Line, r.Where(d.a.Policy), fmt.Sprintf("filter %d uses a DNS name (%s): the guard that drops clear text needs addresses; write the address, or set guard = false in filter action %q (protection then lasts only while charon runs and the SA is up)", f.Index+1, dnsName(f), r.Action.Name), false))
			continue
		}
		d.filter(f, v, rule.Counter, rank(r.Action.Action, v), d.a.Endpoint.Interface(r.Network), r.Tunnel.IsValid())
	}
}

// rank orders two entries for the same traffic as charon's priorities
// order two equally specific policies (render's prioBlock, prioPermit):
// block, then permit, then negotiate; within one action, the guarded
// entry before the hole of guard = false.
func rank(a model.Action, v Verdict) int {
	r := 0
	switch a {
	case model.Block:
		r = 2
	case model.Permit:
		r = 1
	}
	return r*4 + v.strength()
}

func dnsName(f model.ResolvedFilter) string {
	if f.Src.Kind == model.AddrDNS {
		return f.Src.Name
	}
	return f.Dst.Name
}

// filter adds both orientations of a filter in every family it covers,
// each in its direction: outbound, from this side to the peer's, and
// inbound. This side is the filter's source, unless its destination is
// this computer and its source is not (render's orient: charon's local
// selectors). A filter of neither — this computer on neither side, and no
// tunnel (a block or permit rule's `192.0.2.7 → any`) — has no this side:
// mirrored, as Windows means it, it matches packets either way, so both
// orientations go in both directions.
func (d *deriver) filter(f model.ResolvedFilter, v Verdict, counter string, rank int, iface string, tunnel bool) {
	fwd, back := []byte{out}, []byte{in}
	switch {
	case f.Dst.Kind == model.AddrMe && f.Src.Kind != model.AddrMe:
		fwd, back = back, fwd
	case f.Src.Kind != model.AddrMe && !tunnel:
		fwd, back = []byte{out, in}, []byte{out, in}
	}
	for _, fam := range []int{4, 6} {
		srcs := d.prefixes(f.Src, f.Dst, fam)
		dsts := d.prefixes(f.Dst, f.Src, fam)
		for _, s := range srcs {
			for _, t := range dsts {
				for _, dir := range fwd {
					d.add(fam, s, t, f.Proto, f.SrcPort, f.DstPort, v, counter, rank, dir, iface)
				}
				for _, dir := range back {
					d.add(fam, t, s, f.Proto, f.DstPort, f.SrcPort, v, counter, rank, dir, iface)
				}
			}
		}
	}
}

// prefixes expands one side of a filter in family fam: "me" is every
// address of this endpoint, "any" the whole family — where the other side
// can be of that family at all.
func (d *deriver) prefixes(side, other model.Addr, fam int) []netip.Prefix {
	is := func(a netip.Addr) bool { return (fam == 4) == a.Is4() }
	if other.Prefix.IsValid() && !is(other.Prefix.Addr()) {
		return nil
	}
	switch side.Kind {
	case model.AddrMe:
		var out []netip.Prefix
		for _, s := range d.a.Endpoint.Addresses {
			if ip, err := netip.ParseAddr(s); err == nil && is(ip) {
				out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
		return out
	case model.AddrAny:
		if other.Kind == model.AddrMe && len(d.prefixes(other, side, fam)) == 0 {
			return nil
		}
		if fam == 4 {
			return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		}
		return []netip.Prefix{netip.MustParsePrefix("::/0")}
	case model.AddrHost, model.AddrSubnet:
		if is(side.Prefix.Addr()) {
			return []netip.Prefix{side.Prefix.Masked()}
		}
	}
	return nil
}

// A shape is what every entry of one set has in common: the prefix
// lengths, which of protocol and ports are restricted, the direction and
// the interface it is bound to. Two entries of one shape either have the
// same key or do not overlap at all, which is what lets one interval set
// hold them and the order of shapes give most-specific-first.
//
// The direction is charon's: out (from this side to the peer's) is what
// its out policies match, in what its in and fwd policies match. A packet
// this host sends is looked up among the out shapes, one it receives
// among the in shapes, and one it forwards among both, each of which must
// let it through — as the kernel asks a forwarded packet to match its
// out policy and its fwd policy.
type shape struct {
	family           int
	srcBits, dstBits int
	proto            bool
	sport, dport     bool
	iface            string // "" for every interface
	dir              byte   // out or in; 0 in a ruleset of Format 0
}

// Directions of a shape.
const (
	out byte = 'o'
	in  byte = 'i'
)

func (s shape) name() string {
	n := fmt.Sprintf("%d-s%d-d%d", s.family, s.srcBits, s.dstBits)
	if s.proto {
		n += "-p"
	}
	if s.sport {
		n += "-sp"
	}
	if s.dport {
		n += "-dp"
	}
	if s.iface != "" {
		// Hex: an interface name may hold what a set name may not.
		n += "-x" + hex.EncodeToString([]byte(s.iface))
	}
	if s.dir != 0 {
		n += "-" + string(s.dir)
	}
	return n
}

func (s shape) ports() bool { return s.sport || s.dport }

func parseShape(fam int, name string) (shape, error) {
	s := shape{family: fam}
	parts := strings.Split(name, "-")
	if len(parts) < 3 || parts[0] != strconv.Itoa(fam) {
		return s, fmt.Errorf("guard: bad shape %q", name)
	}
	var err error
	if s.srcBits, err = strconv.Atoi(strings.TrimPrefix(parts[1], "s")); err != nil {
		return s, fmt.Errorf("guard: bad shape %q", name)
	}
	if s.dstBits, err = strconv.Atoi(strings.TrimPrefix(parts[2], "d")); err != nil {
		return s, fmt.Errorf("guard: bad shape %q", name)
	}
	for _, p := range parts[3:] {
		switch {
		case p == "p":
			s.proto = true
		case p == "sp":
			s.sport = true
		case p == "dp":
			s.dport = true
		case p == "o":
			s.dir = out
		case p == "i":
			s.dir = in
		case strings.HasPrefix(p, "x"):
			b, err := hex.DecodeString(p[1:])
			if err != nil || len(b) == 0 {
				return s, fmt.Errorf("guard: bad shape %q", name)
			}
			s.iface = string(b)
		default:
			return s, fmt.Errorf("guard: bad shape %q", name)
		}
	}
	return s, nil
}

// score ranks shapes as charon's kernel priorities rank selectors (and as
// render ranks swanmgr's own policies): prefix bits in IPv6 units, then a
// protocol, then ports, then an interface. Higher is more specific.
func (s shape) score() int {
	unit := 1
	if s.family == 4 {
		unit = 4
	}
	n := (s.srcBits + s.dstBits) * unit * 512
	if s.proto {
		n += 256
	}
	if s.sport {
		n += 64
	}
	if s.dport {
		n += 64
	}
	if s.iface != "" {
		n += 16
	}
	return n
}

func (d *deriver) add(fam int, src, dst netip.Prefix, proto, sport, dport int, v Verdict, counter string, rank int, dir byte, iface string) {
	sh := shape{family: fam, srcBits: src.Bits(), dstBits: dst.Bits(), proto: proto != 0,
		sport: sport != model.AnyPort, dport: dport != model.AnyPort, iface: iface, dir: dir}
	// The key holds only what the filter restricts: "any" address, port
	// or protocol is left out, so that the common shapes (hosts and exact
	// ports) are plain hash sets.
	key := make([]string, 0, 5)
	if sh.srcBits > 0 {
		key = append(key, d.prefixText(src))
	}
	if sh.dstBits > 0 {
		key = append(key, d.prefixText(dst))
	}
	if sh.srcBits == 0 && sh.dstBits == 0 {
		key = append(key, map[int]string{4: "ipv4", 6: "ipv6"}[fam])
	}
	if sh.proto {
		key = append(key, strconv.Itoa(proto))
	}
	if sh.sport {
		key = append(key, strconv.Itoa(sport))
	}
	if sh.dport {
		key = append(key, strconv.Itoa(dport))
	}
	name, ok := d.shapes[sh]
	if !ok {
		// A policy has a few shapes and thousands of entries.
		name = sh.name()
		d.shapes[sh] = name
	}
	e := Entry{Family: fam, Shape: name, Key: slices.Clip(key), Verdict: v, Counter: counter, Low: v == Pass && rank == 0}
	id := e.ID()
	if i, ok := d.byID[id]; ok {
		// The same traffic twice in one direction: the action charon
		// lets win wins (rank), then the earlier rule (charon, too,
		// keeps the first of two equal policies).
		if rank > d.ranks[i] {
			d.rs.Entries[i], d.ranks[i] = e, rank
		}
		return
	}
	d.byID[id] = len(d.rs.Entries)
	d.rs.Entries = append(d.rs.Entries, e)
	d.ranks = append(d.ranks, rank)
}

// prefixText is the package's prefixText, kept for this computer's own
// addresses (in every entry of a "me" filter).
func (d *deriver) prefixText(p netip.Prefix) string {
	if t, ok := d.texts[p]; ok {
		return t
	}
	t := prefixText(p)
	if len(d.texts) < 64 {
		d.texts[p] = t
	}
	return t
}

func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
