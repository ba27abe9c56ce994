package pair

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// Endpoint is one validated and rendered policy file.
type Endpoint struct {
	Path     string // as the operator named it, for messages
	Assigned *model.Assigned
	Result   *render.Result
}

// Ref is a place in a policy file.
type Ref struct {
	File string
	Line int // 0 when the file has no line for it
}

func (r Ref) String() string {
	if r.Line > 0 {
		return fmt.Sprintf("%s:%d", r.File, r.Line)
	}
	return r.File
}

// Problem is one disagreement between two endpoints; it names both files.
type Problem struct {
	A, B Ref
	Msg  string
}

func (p Problem) Error() string { return fmt.Sprintf("%s ↔ %s: %s", p.A, p.B, p.Msg) }

// Report is what Check found.
type Report struct {
	// Agreements, one line each, grouped by pair of endpoints.
	Lines    []string
	Problems []Problem
}

// OK reports whether the endpoints agree.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Check compares every pair of endpoints that have rules for each other:
// selectors mirror exactly, security methods intersect, authentication,
// identities and modes agree. A rule for a peer that is one of the
// endpoints but has no rule back is a problem too. Certificates are
// verified as of now (the caller's clock: pair never reads one).
func Check(eps []Endpoint, now time.Time) *Report {
	c := &checker{rep: &Report{}, now: now}
	for i := range eps {
		c.eps = append(c.eps, newEnd(&eps[i]))
	}
	for i, a := range c.eps {
		for _, b := range c.eps[i+1:] {
			c.pair(a, b)
		}
	}
	return c.rep
}

type checker struct {
	eps []*end
	rep *Report
	now time.Time // certificates are verified as of now
}

type end struct {
	*Endpoint
	addrs []netip.Addr
	conns []*render.Conn // negotiate connections of enabled rules
}

func newEnd(e *Endpoint) *end {
	x := &end{Endpoint: e}
	for _, s := range e.Assigned.Endpoint.Addresses {
		if a, err := netip.ParseAddr(s); err == nil {
			x.addrs = append(x.addrs, a.Unmap())
		}
	}
	for i := range e.Result.Conns {
		cn := &e.Result.Conns[i]
		if cn.Origin.Action == string(model.Negotiate) && cn.Origin.RuleIndex >= 0 {
			x.conns = append(x.conns, cn)
		}
	}
	return x
}

func (e *end) has(addr string) (netip.Addr, bool) {
	// A rule whose other side is a subnet or "any" is for each host in it.
	if addr == "%any" && len(e.addrs) > 0 {
		return e.addrs[0], true
	}
	if p, err := netip.ParsePrefix(addr); err == nil && !p.IsSingleIP() {
		for _, x := range e.addrs {
			if p.Contains(x) {
				return x, true
			}
		}
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		// A DNS name: the endpoint's name or identity.
		if strings.EqualFold(addr, e.Assigned.Endpoint.Name) || strings.EqualFold(addr, e.Assigned.Endpoint.ID) {
			return e.addrs[0], true
		}
		return netip.Addr{}, false
	}
	for _, x := range e.addrs {
		if x == a.Unmap() {
			return x, true
		}
	}
	return netip.Addr{}, false
}

func (e *end) name() string {
	if n := e.Assigned.Endpoint.Name; n != "" {
		return n
	}
	return e.Path
}

// connsFor returns e's connections whose peer is one of o's addresses.
func (e *end) connsFor(o *end) []*render.Conn {
	var out []*render.Conn
	for _, cn := range e.conns {
		if _, ok := o.has(cn.Origin.Peer); ok {
			out = append(out, cn)
		}
	}
	return out
}

func (e *end) rule(cn *render.Conn) *model.ResolvedRule {
	for i := range e.Assigned.Rules {
		if e.Assigned.Rules[i].Index == cn.Origin.RuleIndex {
			return &e.Assigned.Rules[i]
		}
	}
	return nil
}

// child is one rendered child with its selectors resolved.
type child struct {
	e             *end
	conn          *render.Conn
	origin        render.ChildOrigin
	body          *render.Section
	local, remote []render.TS
}

func (c *child) ref() Ref { return c.e.refIn(c.origin.File, c.origin.Line) }

// rule is the name of the child's rule.
func (c *child) rule() string { return c.origin.RuleOf(c.conn.Origin) }

// ruleRef points at the child's rule.
func (c *child) ruleRef() Ref {
	if c.origin.Rule != "" && c.origin.RuleIndex != c.conn.Origin.RuleIndex {
		for _, r := range c.e.Assigned.Rules {
			if r.Index == c.origin.RuleIndex {
				return c.e.ref(r.Line)
			}
		}
	}
	return ruleRef(c.e, c.conn)
}

func (c *child) quote() string {
	return fmt.Sprintf("%s filter %q (local %s, remote %s)", c.e.Path, c.origin.Summary, tsList(c.local), tsList(c.remote))
}

func tsList(ts []render.TS) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ",")
}

func (c *checker) problem(a, b Ref, format string, args ...any) {
	c.rep.Problems = append(c.rep.Problems, Problem{A: a, B: b, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) line(format string, args ...any) {
	c.rep.Lines = append(c.rep.Lines, fmt.Sprintf(format, args...))
}

func ruleRef(e *end, cn *render.Conn) Ref { return e.refIn(cn.Origin.File, cn.Origin.Line) }

// ref points at a line of the end's policy as the model numbers it
// (model.File.Locate).
func (e *end) ref(line int) Ref {
	if e.Assigned.File.IsFolder() {
		f, l := e.Assigned.File.Locate(line)
		return Ref{File: f, Line: l}
	}
	return Ref{File: e.Path, Line: line}
}

// refIn points at a line of a rendered origin: in file for a folder
// policy, in the end's file otherwise.
func (e *end) refIn(file string, line int) Ref {
	if file != "" {
		return Ref{File: file, Line: line}
	}
	return Ref{File: e.Path, Line: line}
}

func (c *checker) pair(a, b *end) {
	ab, ba := a.connsFor(b), b.connsFor(a)
	if len(ab) == 0 && len(ba) == 0 {
		return
	}
	c.line("%s (%s) ↔ %s (%s):", a.Path, a.name(), b.Path, b.name())
	if len(ba) == 0 {
		for _, cn := range ab {
			c.problem(ruleRef(a, cn), Ref{File: b.Path}, "rule %q is for %s, but %s has no rule for %s: charon there has no matching connection and refuses (AUTHENTICATION_FAILED or TS_UNACCEPTABLE)", cn.Origin.Rule, cn.Origin.Peer, b.Path, strings.Join(addrStrings(a.addrs), ", "))
		}
		return
	}
	if len(ab) == 0 {
		for _, cn := range ba {
			c.problem(Ref{File: a.Path}, ruleRef(b, cn), "%s has no rule for %s, but rule %q of %s is for %s: charon there has no matching connection and refuses", a.Path, strings.Join(addrStrings(b.addrs), ", "), cn.Origin.Rule, b.Path, cn.Origin.Peer)
		}
		return
	}
	// The IKE addresses: what each side calls the other.
	aAddr, _ := a.has(ba[0].Origin.Peer)
	bAddr, _ := b.has(ab[0].Origin.Peer)
	ac := children(a, ab, aAddr, bAddr)
	bc := children(b, ba, bAddr, aAddr)

	// Settings are compared per pair of rules (children of one
	// connection may belong to different rules, each with its own
	// proposals and lifetimes), IKE and authentication once per pair of
	// connections.
	type rulePair struct {
		ca, cb *render.Conn
		ra, rb string
	}
	firstPair := map[rulePair]bool{}
	var pairOrder [][2]*child
	link := func(x, y *child) {
		k := rulePair{x.conn, y.conn, x.rule(), y.rule()}
		if !firstPair[k] {
			firstPair[k] = true
			pairOrder = append(pairOrder, [2]*child{x, y})
		}
	}
	// Exact mirrors first, so a filter that has one is not offered as the
	// nearest (wrong) counterpart of another.
	usedB := map[*child]bool{}
	exactA := map[*child]bool{}
	for _, x := range ac {
		for _, y := range bc {
			if !usedB[y] && relate(x, y) == relExact {
				usedB[y], exactA[x] = true, true
				link(x, y)
				break
			}
		}
	}
	exact := len(exactA)
	for _, x := range ac {
		if exactA[x] {
			continue
		}
		best, bestRel := nearest(x, bc, func(y *child) bool { return !usedB[y] })
		if best == nil {
			// Nothing left on the other side is near; the nearest filter
			// already mirrors another one, but charon may still narrow to it.
			near, _ := nearest(x, bc, func(*child) bool { return true })
			pred := "; charon answers TS_UNACCEPTABLE and no SA comes up"
			if near != nil {
				pred = prediction(x, near)
			}
			c.problem(x.ref(), Ref{File: b.Path}, "no filter of %s mirrors %s%s", b.Path, x.quote(), pred)
			continue
		}
		usedB[best] = true
		link(x, best)
		c.problem(x.ref(), best.ref(), "%s: %s vs %s%s", bestRel.words(), x.quote(), best.quote(), prediction(x, best))
	}
	for _, y := range bc {
		if !usedB[y] {
			near, _ := nearest(y, ac, func(*child) bool { return true })
			pred := "; charon answers TS_UNACCEPTABLE and no SA comes up"
			if near != nil {
				pred = prediction(y, near)
			}
			c.problem(Ref{File: a.Path}, y.ref(), "no filter of %s mirrors %s%s", a.Path, y.quote(), pred)
		}
	}
	if exact > 0 {
		c.line("  selectors: %d of %d filters of %s mirror %s exactly", exact, len(ac), a.Path, b.Path)
	}
	connDone := map[[2]*render.Conn]bool{}
	for _, k := range pairOrder {
		x, y := k[0], k[1]
		cp := [2]*render.Conn{x.conn, y.conn}
		c.conns(a, b, x, y, !connDone[cp])
		connDone[cp] = true
	}
}

// nearest returns the filter of others closest to x among those ok
// accepts, nil when none relates at all.
func nearest(x *child, others []*child, ok func(*child) bool) (*child, relation) {
	var best *child
	bestRel := relNone
	for _, y := range others {
		if !ok(y) {
			continue
		}
		if r := relate(x, y); r < bestRel {
			best, bestRel = y, r
		}
	}
	return best, bestRel
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func children(e *end, conns []*render.Conn, self, peer netip.Addr) []*child {
	var out []*child
	for _, cn := range conns {
		for _, o := range cn.Children {
			body := cn.Body.Child(o.Name)
			if body == nil {
				continue
			}
			if body.Value("mode") == "pass" || o.FilterIndex < 0 {
				// Not negotiated (this computer's own addresses in a
				// subnet rule's connection) or only answered (the default
				// response rule's child in a peer's connection).
				continue
			}
			ch := &child{e: e, conn: cn, origin: o, body: body}
			// swanmgr's own rendering: its selectors always parse.
			ch.local, _ = body.Selectors("local_ts", self)
			ch.remote, _ = body.Selectors("remote_ts", peer)
			if rangePeer(cn.Origin.Peer) {
				// A subnet or "any" rule negotiates with each host in it
				// on its own: with this peer, the remote side is the peer.
				ch.remote = narrowTo(ch.remote, peer)
			}
			out = append(out, ch)
		}
	}
	return out
}

// rangePeer reports whether a connection's peer is a subnet or %any.
func rangePeer(p string) bool {
	if p == "%any" {
		return true
	}
	pfx, err := netip.ParsePrefix(p)
	return err == nil && !pfx.IsSingleIP()
}

// narrowTo keeps the selectors that contain host, narrowed to it.
func narrowTo(ts []render.TS, host netip.Addr) []render.TS {
	var out []render.TS
	for _, t := range ts {
		if !t.Dynamic && t.Prefix.Contains(host) {
			t.Prefix = netip.PrefixFrom(host, host.BitLen())
			out = append(out, t)
		}
	}
	return out
}

// relation is how a filter on one side relates to the nearest filter on
// the other; lower is closer.
type relation int

const (
	relExact relation = iota
	relReversedPorts
	relReversedAddrs
	relMissingPort
	relNarrower
	relOverlap
	relNone
)

func (r relation) words() string {
	switch r {
	case relReversedPorts:
		return "reversed ports (each side puts the port on the other's address)"
	case relReversedAddrs:
		return "reversed source and destination addresses"
	case relMissingPort:
		return "a missing port (one side restricts a port the other leaves open)"
	case relNarrower:
		return "one side is narrower"
	case relOverlap:
		return "the filters only overlap"
	}
	return "mirror"
}

// relate compares a filter x of one side with a filter y of the other:
// mirrored, y's remote must equal x's local and y's local x's remote.
func relate(x, y *child) relation {
	yl, yr := y.remote, y.local // y seen from x's side
	if setEqual(x.local, yl) && setEqual(x.remote, yr) {
		return relExact
	}
	if len(x.local) == 1 && len(x.remote) == 1 && len(yl) == 1 && len(yr) == 1 {
		xl, xr, l, r := x.local[0], x.remote[0], yl[0], yr[0]
		if withPorts(xl, xr).Equal(l) && withPorts(xr, xl).Equal(r) {
			return relReversedPorts
		}
		if xl.Equal(r) && xr.Equal(l) {
			return relReversedAddrs
		}
		if sameAddrProto(xl, l) && sameAddrProto(xr, r) && (xl.Covers(l) || l.Covers(xl)) && (xr.Covers(r) || r.Covers(xr)) {
			return relMissingPort
		}
	}
	if (setCovers(x.local, yl) && setCovers(x.remote, yr)) || (setCovers(yl, x.local) && setCovers(yr, x.remote)) {
		return relNarrower
	}
	if setIntersects(x.local, yl) && setIntersects(x.remote, yr) {
		return relOverlap
	}
	return relNone
}

func withPorts(t, from render.TS) render.TS {
	t.PortLo, t.PortHi = from.PortLo, from.PortHi
	return t
}

func sameAddrProto(a, b render.TS) bool { return a.Prefix == b.Prefix && a.Proto == b.Proto }

func setEqual(a, b []render.TS) bool { return setCovers(a, b) && setCovers(b, a) }

// setCovers: every selector of b lies in one of a.
func setCovers(a, b []render.TS) bool {
	if len(b) == 0 {
		return len(a) == 0
	}
	for _, u := range b {
		ok := false
		for _, t := range a {
			ok = ok || t.Covers(u)
		}
		if !ok {
			return false
		}
	}
	return true
}

func setIntersects(a, b []render.TS) bool {
	for _, t := range a {
		for _, u := range b {
			if _, ok := t.Intersect(u); ok {
				return true
			}
		}
	}
	return false
}

// prediction says what charon does when x's side initiates.
func prediction(x, y *child) string {
	var ls, rs []string
	for _, t := range x.local {
		for _, u := range y.remote {
			if i, ok := t.Intersect(u); ok {
				ls = append(ls, i.String())
			}
		}
	}
	for _, t := range x.remote {
		for _, u := range y.local {
			if i, ok := t.Intersect(u); ok {
				rs = append(rs, i.String())
			}
		}
	}
	if len(ls) == 0 || len(rs) == 0 {
		return "; charon answers TS_UNACCEPTABLE and no SA comes up"
	}
	return fmt.Sprintf("; charon does not refuse but narrows the SA to the intersection (with these two filters %s === %s; the responder may pick another of its filters first): only traffic that matches both is protected, the rest is dropped, and initiate reports the SA narrowed", strings.Join(ls, ","), strings.Join(rs, ","))
}

// conns compares the settings of two rules whose filters x and y mirror:
// mode, proposals and lifetimes of the children, and with ike also those
// of their connections (IKE proposals, authentication and identities).
func (c *checker) conns(a, b *end, x, y *child, ike bool) {
	ca, cb := x.conn, y.conn
	ra, rb := x.ruleRef(), y.ruleRef()
	c.line("  rule %q (%s) ↔ rule %q (%s):", x.rule(), ra, y.rule(), rb)
	ka, kb := x.body, y.body
	if ka != nil && kb != nil {
		ma, mb := ka.Value("mode"), kb.Value("mode")
		if ma != mb {
			c.problem(ra, rb, "modes differ: %s uses %s, %s uses %s (a tunnel endpoint on one side only); charon answers NO_PROPOSAL_CHOSEN or falls back", a.Path, modeWords(ma), b.Path, modeWords(mb))
		} else {
			c.line("    mode: %s on both", modeWords(ma))
		}
		c.proposals(a, b, ra, rb, ka, kb)
		ta, tb := lifetime(ka), lifetime(kb)
		if ta != tb {
			c.line("    lifetimes: %s rekeys %s, %s %s; IKEv2 does not negotiate lifetimes, so the earlier end rekeys (compatible)", a.Path, ta, b.Path, tb)
		} else {
			c.line("    lifetimes: both rekey %s", ta)
		}
	}
	if !ike {
		return
	}
	if sel := selectProposal(ca.Body.List("proposals"), cb.Body.List("proposals"), true); sel.ok {
		c.line("    IKE: %s would be chosen", sel.chosen)
	} else {
		c.problem(ra, rb, "no common IKE proposal: %s; charon answers NO_PROPOSAL_CHOSEN and no IKE_SA comes up", sel.why)
	}
	c.auth(a, b, ca, cb, ra, rb)
}

func modeWords(m string) string {
	if m == "tunnel" {
		return "tunnel mode"
	}
	return m + " mode"
}

func lifetime(s *render.Section) string {
	var parts []string
	if v := s.Value("rekey_time"); v != "" {
		parts = append(parts, "after "+v)
	}
	if v := s.Value("rekey_bytes"); v != "" {
		parts = append(parts, "after "+v+" bytes")
	}
	if len(parts) == 0 {
		return "at charon's default (1 h)"
	}
	return strings.Join(parts, " or ")
}

func (c *checker) proposals(a, b *end, ra, rb Ref, ka, kb *render.Section) {
	espA, espB := ka.List("esp_proposals"), kb.List("esp_proposals")
	ahA, ahB := ka.List("ah_proposals"), kb.List("ah_proposals")
	proto := "ESP"
	pa, pb := espA, espB
	switch {
	case len(ahA) > 0 && len(ahB) > 0:
		proto, pa, pb = "AH", ahA, ahB
	case len(ahA) > 0 || len(ahB) > 0:
		c.problem(ra, rb, "no common security protocol: %s uses %s, %s uses %s; charon answers NO_PROPOSAL_CHOSEN and no SA comes up",
			a.Path, protoOf(ahA), b.Path, protoOf(ahB))
		return
	}
	sel := selectProposal(pa, pb, false)
	if !sel.ok {
		c.problem(ra, rb, "no common %s proposal: %s (%s) vs %s (%s): %s; charon answers NO_PROPOSAL_CHOSEN and no SA comes up",
			proto, a.Path, strings.Join(pa, ","), b.Path, strings.Join(pb, ","), sel.why)
		return
	}
	c.line("    %s: %s would be chosen", proto, sel.chosen)
	switch {
	case !sel.dhOK:
		c.problem(ra, rb, "session key PFS differs: %s proposes %s, %s proposes %s; the first SA comes up (IKEv2 takes its keys from the IKE_SA), but the first rekey fails with NO_PROPOSAL_CHOSEN and the SA is closed at its lifetime",
			a.Path, groupsOf(pa), b.Path, groupsOf(pb))
	case sel.dh != "":
		c.line("    PFS: %s on both (used from the first rekey on)", sel.dh)
	default:
		c.line("    PFS: off on both")
	}
}

func protoOf(ah []string) string {
	if len(ah) > 0 {
		return "AH"
	}
	return "ESP"
}

func groupsOf(ps []string) string {
	var gs []string
	for _, p := range ps {
		gs = append(gs, parseProposal(p).dh...)
	}
	if len(gs) == 0 {
		return "no PFS group"
	}
	return "PFS group " + strings.Join(gs, ",")
}

func (c *checker) auth(a, b *end, ca, cb *render.Conn, ra, rb Ref) {
	la, rA := ca.Body.Subsection("local"), ca.Body.Subsection("remote")
	lb, rB := cb.Body.Subsection("local"), cb.Body.Subsection("remote")
	if la == nil || lb == nil || rA == nil || rB == nil {
		c.problem(ra, rb, "a rule has no authentication")
		return
	}
	ma, mb := la.Value("auth"), lb.Value("auth")
	if ma != mb || rA.Value("auth") != mb || rB.Value("auth") != ma {
		c.problem(ra, rb, "authentication methods differ: %s uses %s, %s uses %s; charon answers AUTHENTICATION_FAILED", a.Path, authWords(ma), b.Path, authWords(mb))
		return
	}
	idOK := true
	for _, x := range []struct {
		who, whom *end
		want, got string
		ref       Ref
	}{{a, b, rA.Value("id"), lb.Value("id"), ra}, {b, a, rB.Value("id"), la.Value("id"), rb}} {
		if x.want != "%any" && x.got != "" && !strings.EqualFold(x.want, x.got) {
			idOK = false
			c.problem(ra, rb, "identities differ: %s expects %s to authenticate as %q, but %s's identity is %q (endpoint.id); charon finds no matching peer config or key (AUTHENTICATION_FAILED)", x.who.Path, x.whom.name(), x.want, x.whom.Path, x.got)
		}
	}
	if idOK {
		c.line("    identities: %q and %q as each side expects", la.Value("id"), lb.Value("id"))
	}
	switch ma {
	case "psk":
		sa, srcA := secretFor(a, ca)
		sb, srcB := secretFor(b, cb)
		if sa.IsZero() || sb.IsZero() {
			c.problem(ra, rb, "a preshared key is missing")
			return
		}
		if subtle.ConstantTimeCompare([]byte(sa.Reveal()), []byte(sb.Reveal())) != 1 {
			c.problem(ra, rb, "preshared keys differ (%s's from %s, %s's from %s; neither is shown); charon answers AUTHENTICATION_FAILED", a.Path, srcA, b.Path, srcB)
			return
		}
		c.line("    authentication: preshared key, the same on both (%s, %s)", srcA, srcB)
	case "pubkey":
		okA := c.trusts(a, b, rA, lb, rA.Value("id"), ra, rb)
		okB := c.trusts(b, a, rB, la, rB.Value("id"), rb, ra)
		if okA && okB {
			c.line("    authentication: certificates, each signed by a CA the other trusts")
		}
	}
}

func authWords(m string) string {
	switch m {
	case "psk":
		return "a preshared key"
	case "pubkey":
		return "certificates"
	}
	return m
}

// secretFor returns the preshared key a connection uses and where it was
// read from (never the key).
func secretFor(e *end, cn *render.Conn) (model.Secret, string) {
	src := "?"
	if r := e.rule(cn); r != nil && len(r.Auth) > 0 {
		src = r.Auth[0].Source
	}
	for _, s := range e.Result.Secrets {
		for _, n := range s.Conns {
			if n == cn.Name {
				return s.Data, src
			}
		}
	}
	return model.Secret{}, src
}

// trusts checks that who's CA (remote.cacerts) verifies whom's
// certificate (local.certs) and that the certificate carries the identity
// who expects.
func (c *checker) trusts(who, whom *end, remote, local *render.Section, wantID string, rWho, rWhom Ref) bool {
	cas := remote.Files("cacerts")
	certs := local.Files("certs")
	if len(cas) == 0 || len(certs) == 0 {
		c.problem(rWho, rWhom, "certificate authentication without a CA or a certificate")
		return false
	}
	pool := x509.NewCertPool()
	for _, f := range cas {
		for _, cert := range parseCerts(f.Data) {
			pool.AddCert(cert)
		}
	}
	leafs := parseCerts(certs[0].Data)
	if len(leafs) == 0 {
		c.problem(rWho, rWhom, "%s's certificate %s cannot be parsed", whom.Path, certs[0].Path)
		return false
	}
	leaf := leafs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: c.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		c.problem(rWho, rWhom, "%s does not trust %s's certificate (%s): %v; charon answers AUTHENTICATION_FAILED", who.Path, whom.Path, certs[0].Path, err)
		return false
	}
	if wantID != "" && wantID != "%any" && !model.CertHasIdentity(leaf, wantID) {
		c.problem(rWho, rWhom, "%s expects the identity %q, which %s's certificate (%s) does not carry (subject %q); charon answers AUTHENTICATION_FAILED", who.Path, wantID, whom.Path, certs[0].Path, leaf.Subject.String())
		return false
	}
	return true
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
	if len(out) == 0 && !bytes.Contains(data, []byte("-----BEGIN")) {
		if c, err := x509.ParseCertificate(data); err == nil {
			out = append(out, c)
		}
	}
	return out
}
