package render

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/internal/slug"
	"github.com/swanmgr/swanmgr/model"
)

// NamePrefix starts the name of every connection, child and secret swanmgr
// renders, so that an operator can tell them apart in swanctl output.
const NamePrefix = "sm-"

// IKE proposals used for every connection: the IKE_SA protects the key
// exchange itself, which Windows configured per policy ("Key Exchange
// Settings") and swanmgr keeps modern and fixed so both ends agree.
var ikeProposals = []string{"aes256gcm16-aes128gcm16-prfsha384-prfsha256-x25519-ecp384"}

// Render turns a validated, assigned policy into connections, children and
// secrets. Problems that only show when rendering (names that collide
// after rendering, rules a backend cannot express) are returned as
// model.Problems.
func Render(a *model.Assigned, o Options) (*Result, error) {
	if o.Backend == "" {
		o.Backend = Kernel
	}
	// The guard comes from the model alone: derived on another CPU
	// while the connections are rendered (each takes about a third of
	// render's time at thousands of rules). Both only read the model.
	var g *guard.Ruleset
	var probs model.Problems
	derived := make(chan struct{})
	go func() {
		defer close(derived)
		g, probs = guard.Derive(a, guard.Backend(o.Backend))
	}()
	r := renderConns(a, o)
	if o.Prior != nil {
		o.Prior.spend()
		if len(r.errs) > 0 {
			// What went wrong is said as Render alone says it.
			o.Prior = nil
			r = renderConns(a, o)
		}
	}
	<-derived
	r.errs = append(r.errs, probs...)
	if len(r.errs) > 0 {
		return nil, r.errs
	}
	r.res.Guard = g
	// Complete: each connection's settings kept packed (Section.Freeze).
	for i := range r.res.Conns {
		if !noFreeze {
			r.res.Conns[i].Body.Freeze()
		}
	}
	r.keepKeys()
	return r.res, nil
}

// renderConns renders the connections, children and secrets.
func renderConns(a *model.Assigned, o Options) *renderer {
	r := &renderer{a: a, o: o, res: &Result{Source: a.File.Path, Policy: a.Policy.Name, Backend: o.Backend, Conns: make([]Conn, 0, len(a.Rules)), Secrets: make([]Secret, 0, len(a.Rules))},
		names: make(map[string]claimed, 3*len(a.Rules)), secretIdx: make(map[string]int, len(a.Rules)),
		peerConn: make(map[string]int, len(a.Rules)), peerRule: make(map[int]firstRule, len(a.Rules))}
	if o.Prior != nil {
		o.Prior.used = 0
	}
	r.run()
	r.localLines()
	if o.Backend == LibIPsec {
		r.blackHoles()
	} else {
		r.unresolvedTraps()
	}
	return r
}

// keepKeys gives the result its connections' keys in a Prior: those
// made or taken with a key whose settings are frozen.
func (r *renderer) keepKeys() {
	if r.prior == nil {
		return
	}
	r.res.keys = make([]connKey, len(r.res.Conns))
	if r.a.File.IsFolder() {
		r.res.folder = r.a.File.Path
	}
	for ci, k := range r.keyOf {
		if k.ok && ci < len(r.res.Conns) && r.res.Conns[ci].Body != nil && r.res.Conns[ci].Body.packed != "" {
			r.res.keys[ci] = k
			r.res.keyed++
		}
	}
}

// localLines gives the origins of a folder policy the file and line of
// their rule or filter (model.File.Locate): its lines are numbered across
// the folder's files.
func (r *renderer) localLines() {
	if !r.a.File.IsFolder() {
		return
	}
	for i := range r.res.Conns {
		c := &r.res.Conns[i]
		if r.isTaken(i) {
			continue // as it was: its lines are its file's
		}
		if c.Origin.Line > 0 {
			c.Origin.File, c.Origin.Line = r.a.File.Locate(c.Origin.Line)
		}
		for j := range c.Children {
			if ch := &c.Children[j]; ch.Line > 0 {
				ch.File, ch.Line = r.a.File.Locate(ch.Line)
			}
		}
	}
}

// firstRule is what render keeps of the rule that made a peer's
// connection, to compare the later rules to that peer with.
type firstRule struct {
	name string
	auth []model.ResolvedAuth
}

type renderer struct {
	// pos is the position of the rule being rendered; lastUse that of
	// the last rule to each peer (lastRuleOfPeers).
	pos     int
	lastUse map[string]int
	peers   [][]string // model.Peers of each rule (lastRuleOfPeers)
	a       *model.Assigned
	o       Options
	res     *Result
	errs    model.Problems
	names   map[string]claimed // rendered name -> what it came from

	peerConn map[string]int    // peerKey -> index in res.Conns of the peer's connection
	peerRule map[int]firstRule // index in res.Conns -> the rule that created it

	secretIdx map[string]int // owners -> index in res.Secrets
	// localIDs are model.LocalID by the kind of peer (localID).
	localIDs map[byte]string

	// prior: the keys of connections in o.Prior (nil without one);
	// keyOf the key of each connection made or taken with one, by its
	// index in res.Conns.
	prior *priorKeys
	keyOf []connKey
}

func (r *renderer) errf(line int, where, format string, args ...any) {
	r.errs = append(r.errs, r.a.File.Problem(line, where, fmt.Sprintf(format, args...), false))
}

// claimed is what a rendered name came from: what, or "what of of"
// (joined only for a message: most names never collide).
type claimed struct{ what, of string }

func (c claimed) String() string {
	if c.of == "" {
		return c.what
	}
	return c.what + " of " + c.of
}

// claim registers a rendered name and reports a collision.
func (r *renderer) claim(name, what string, line int, where string) bool {
	return r.claimOf(name, claimed{what: what}, line, where)
}

// claimOf is claim for the kind of name ("connection", "child", ...) of
// a rule (where).
func (r *renderer) claimOf(name string, c claimed, line int, where string) bool {
	if prev, dup := r.names[name]; dup {
		r.errf(line, where, "renders to the name %q, which %s already uses; rename one of them", name, prev)
		return false
	}
	r.names[name] = c
	return true
}

func (r *renderer) run() {
	r.lastUse = r.lastRuleOfPeers()
	r.startPrior()
	for i, rule := range r.a.Rules {
		r.pos = i
		switch rule.Action.Action {
		case model.Negotiate:
			r.negotiate(rule)
		case model.Permit, model.Block:
			r.shunt(rule)
		}
	}
	if r.a.Policy.DefaultResponseRule {
		r.defaultResponse()
	}
	r.neighbourDiscovery()
}

// lastRuleOfPeers gives, for each peer of the negotiate rules, the
// position of the last rule to it: its connection is complete after that
// rule and can be frozen (Section.Freeze) then, so that the settings of
// thousands of connections are never all trees at once. None when the
// default response rule adds a child to every connection at the end.
func (r *renderer) lastRuleOfPeers() map[string]int {
	if r.a.Policy.DefaultResponseRule {
		return nil
	}
	last := make(map[string]int, len(r.a.Rules))
	r.peers = make([][]string, len(r.a.Rules))
	for i, rule := range r.a.Rules {
		if rule.Action.Action != model.Negotiate {
			continue
		}
		r.peers[i] = model.Peers(rule)
		for _, peer := range r.peers[i] {
			last[peerKey(ikePeerOf(&rule, peer))] = i
		}
	}
	return last
}

// peersOf is model.Peers of the rule being rendered, made once.
func (r *renderer) peersOf(rule model.ResolvedRule) []string {
	if r.pos < len(r.peers) && r.peers[r.pos] != nil {
		return r.peers[r.pos]
	}
	return model.Peers(rule)
}

// Slug makes a name usable in swanctl.conf and VICI: lower case letters,
// digits and dashes, at most 40 characters.
func Slug(s string) string { return slug.Make(s) }

func (r *renderer) ruleSlug(rule model.ResolvedRule) string {
	s := Slug(rule.Name)
	if s == "" {
		s = "rule" + strconv.Itoa(rule.Index+1)
	}
	return s
}

// negotiate renders a negotiate rule: its filters become children of the
// connection of each of its peers. The first rule that names a peer
// creates that peer's connection (named after it, as before); later rules
// to the same peer add their children to it, each child with its own
// proposals and lifetimes. charon selects one peer config per peer (by
// addresses and identities, not by traffic selectors) and looks a
// CHILD_SA's selectors up only among that config's children, so a second
// connection to the same peer would never get its SAs (Windows runs one
// quick mode per rule with the same peer).
func (r *renderer) negotiate(rule model.ResolvedRule) {
	where := rule.Where(r.a.Policy)
	if r.o.Backend == LibIPsec && !r.libipsecCanDo(rule, where) {
		return
	}
	peers := r.peersOf(rule)
	base := NamePrefix + r.ruleSlug(rule)
	for _, peer := range peers {
		name := base
		if len(peers) > 1 {
			name += "-" + Slug(peer)
		}
		ikePeer := ikePeerOf(&rule, peer)
		if isRange(ikePeer) && r.o.Backend == LibIPsec {
			r.errf(rule.Line, where, "the other side %s is not one host: the kernel backend negotiates such a rule with each host contacted (a trap policy for the whole range starts one IKE_SA per host, as Windows), but libipsec has no trap policies, so charon cannot learn which host to negotiate with; list the hosts, set tunnel_endpoint, or use the kernel backend", peer)
			continue
		}
		pk := peerKey(ikePeer)
		ci, ok := r.peerConn[pk]
		if ok {
			first := r.peerRule[ci]
			if why := model.AuthConflict(first.auth, rule.Auth); why != "" {
				// Validation refuses this already; a renderer must not
				// merge what it cannot express.
				r.errf(rule.Line, where, "peer %s is also the peer of rule %q, and %s: charon keeps one peer config per peer, so both rules must authenticate alike", ikePeer, first.name, why)
				continue
			}
		} else {
			if !r.claimOf(name, claimed{"connection", where}, rule.Line, where) {
				continue
			}
			var key [32]byte
			if r.prior != nil {
				var took bool
				if key, took = r.takePrior(ikePeer, pk, rule, where); took {
					continue
				}
			}
			conn := Conn{
				Name: name,
				Origin: Origin{Policy: r.a.Policy.Name, Rule: rule.Name, RuleIndex: rule.Index, FilterList: rule.List.Name,
					Action: string(rule.Action.Action), Peer: ikePeer, Line: rule.Line},
				Comment: "rule " + strconv.Quote(rule.Name) + ": filter list " + strconv.Quote(rule.List.Name) + ", filter action " + strconv.Quote(rule.Action.Name) + ", peer " + ikePeer,
			}
			body := &Section{items: make([]Item, 0, 8)}
			r.ikeSettings(body, ikePeer, rule.Auth)
			kids := body.subCap("children", "", len(rule.Filters))
			conn.Body = body
			if isRange(ikePeer) {
				r.selfPass(&conn, kids, ikePeer, rule, where)
			}
			ci = len(r.res.Conns)
			r.res.Conns = append(r.res.Conns, conn)
			if r.prior != nil {
				r.keyConn(ci, key, false)
			}
			r.peerConn[pk] = ci
			r.peerRule[ci] = firstRule{name: rule.Name, auth: rule.Auth}
			r.authMaterial(name, ikePeer, rule.Auth, rule.Line, where)
		}
		if r.isTaken(ci) {
			continue // its children are in it
		}
		conn := &r.res.Conns[ci]
		if ok {
			conn.Comment += fmt.Sprintf("; rule %q: filter list %q, filter action %q", rule.Name, rule.List.Name, rule.Action.Name)
		}
		children := conn.Body.edit("children")
		for _, f := range rule.Filters {
			if !rule.Tunnel.IsValid() && otherHost(f) != peer {
				continue
			}
			child := name + "-" + strconv.Itoa(f.Index+1)
			if !r.claimOf(child, claimed{"child", where}, f.Line, where) {
				continue
			}
			local, remote, lp, rp := orient(f)
			summary := f.Summary()
			comment := "filter " + strconv.Itoa(f.Index+1) + ": " + summary
			if ok {
				comment = "rule " + strconv.Quote(rule.Name) + " " + comment
			}
			cs := children.subCap(child, comment, 8)
			kind := tsTransport
			if rule.Tunnel.IsValid() {
				kind = tsTunnel
			}
			cs.SetList("local_ts", r.selectors(local, remote, f, lp, kind)...)
			cs.SetList("remote_ts", r.selectors(remote, local, f, rp, kind)...)
			r.childSecurity(cs, rule)
			cs.Set("priority", strconv.Itoa(r.priority(f, rule)))
			conn.Children = append(conn.Children, ChildOrigin{Name: child, FilterIndex: f.Index, Line: f.Line, Summary: summary,
				Rule: rule.Name, RuleIndex: rule.Index, FilterList: rule.List.Name})
		}
		if last, ok := r.lastUse[pk]; ok && last == r.pos && !noFreeze {
			conn.Body.Freeze()
		}
	}
}

// rangeID is the identity expected of a peer: its address or name, any
// identity for a range (each host authenticates as itself).
func rangeID(peer string) string {
	if isRange(peer) {
		return "%any"
	}
	return peer
}

// isRange reports whether an IKE peer is not one host: %any or a subnet
// (a negotiate rule whose other side is "any" or a subnet, negotiated
// with each host contacted).
func isRange(peer string) bool {
	if peer == "%any" {
		return true
	}
	p, err := netip.ParsePrefix(peer)
	return err == nil && !p.IsSingleIP()
}

// selfPass adds pass children for this computer's own addresses inside a
// range peer's connection: the range's trap would otherwise also take
// traffic to this computer itself, and charon would negotiate with
// itself.
func (r *renderer) selfPass(conn *Conn, kids *Section, peer string, rule model.ResolvedRule, where string) {
	pfx, err := netip.ParsePrefix(peer)
	for _, s := range r.a.Endpoint.Addresses {
		ip, perr := netip.ParseAddr(s)
		if perr != nil || (err == nil && !pfx.Contains(ip)) {
			continue
		}
		child := fmt.Sprintf("%s-self-%s", conn.Name, Slug(s))
		if !r.claimOf(child, claimed{"child", where}, rule.Line, where) {
			continue
		}
		host := netip.PrefixFrom(ip, ip.BitLen()).String()
		cs := kids.Sub(child, "this computer itself: not negotiated ("+s+" is in "+peer+")")
		cs.SetList("local_ts", host)
		cs.SetList("remote_ts", host)
		cs.Set("mode", "pass")
		cs.Set("start_action", "trap")
		conn.Children = append(conn.Children, ChildOrigin{Name: child, FilterIndex: -1, Summary: s + " ↔ " + s + " (this computer)", Rule: rule.Name, RuleIndex: rule.Index})
	}
}

// peerKey is how peers are told apart: an address in its canonical form,
// a DNS name without case.
func peerKey(peer string) string {
	if ip, err := netip.ParseAddr(peer); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(peer)
}

// libipsecCanDo reports (and returns false for) security that charon's
// userspace IPsec cannot install: it has no AH, and its ESP has no AES-GMAC
// (esp_context.c creates AEADs with a salt only for GCM, CCM and
// ChaCha20-Poly1305). charon would negotiate such a CHILD_SA and then fail
// to install it.
func (r *renderer) libipsecCanDo(rule model.ResolvedRule, where string) bool {
	act := rule.Action
	if len(act.AHInteg) > 0 {
		r.errf(rule.Line, where, "filter action %q uses AH (ah_integrity), which the libipsec backend does not support: use ESP (security = \"high\", or custom esp_encryption) or the kernel backend", act.Name)
		return false
	}
	for _, a := range act.ESPEnc {
		if strings.HasSuffix(a, "gmac") {
			what := "esp_encryption " + a
			if act.Security == model.Medium {
				what = "security = \"medium\" (ESP " + a + ", integrity only)"
			}
			r.errf(rule.Line, where, "filter action %q: %s is not supported on the libipsec backend (its userspace ESP has no AES-GMAC): use security = \"high\" or the kernel backend", act.Name, what)
			return false
		}
	}
	return true
}

// localID is model.LocalID(r.a, peer), which depends only on whether
// peer is an address and of which family: made once for each.
func (r *renderer) localID(peer string) string {
	kind := byte('n')
	if ip, err := netip.ParseAddr(peer); err == nil {
		kind = '6'
		if ip.Unmap().Is4() {
			kind = '4'
		}
	}
	if id, ok := r.localIDs[kind]; ok {
		return id
	}
	id := model.LocalID(r.a, peer)
	if r.localIDs == nil {
		r.localIDs = map[byte]string{}
	}
	r.localIDs[kind] = id
	return id
}

// ikeSettings writes the IKE (connection-level) settings for a peer.
func (r *renderer) ikeSettings(body *Section, peer string, auth []model.ResolvedAuth) {
	body.Set("version", "2")
	// Only the addresses of the peer's family: charon would otherwise
	// try an IPv4 source towards an IPv6 peer on a dual-stack endpoint.
	peerIP, _ := netip.ParseAddr(peer)
	if p, err := netip.ParsePrefix(peer); err == nil {
		peerIP = p.Addr()
	}
	body.SetList("local_addrs", model.AddressesFor(r.a.Endpoint, peerIP)...)
	body.SetList("remote_addrs", peer)
	body.SetList("proposals", ikeProposals...)
	if !isRange(peer) {
		// Both ends start (or trap) the same rule; when both IKE_SAs get
		// through, the one authenticated second replaces the first
		// (charon deletes the older one), instead of two pairs of SAs.
		body.Set("unique", "replace")
	}
	if len(auth) == 0 {
		return
	}
	a := auth[0]
	local := body.subCap("local", "", 3)
	remote := body.subCap("remote", "", 3)
	switch a.Method {
	case model.PSK:
		local.Set("auth", "psk")
		local.Set("id", r.localID(peer))
		remote.Set("auth", "psk")
		remote.Set("id", rangeID(peer))
	case model.Certificate:
		local.Set("auth", "pubkey")
		local.Add(FilesItem("certs", FileRef{Path: a.CertPath, Data: a.Cert}))
		if id := r.localID(peer); id != "" {
			local.Set("id", id)
		}
		remote.Set("auth", "pubkey")
		remote.Add(FilesItem("cacerts", FileRef{Path: a.CAPath, Data: a.CA}))
		id := a.PeerID
		if id == "" {
			id = rangeID(peer)
		}
		remote.Set("id", id)
	}
}

// childSecurity writes mode, start action, proposals and lifetimes.
func (r *renderer) childSecurity(cs *Section, rule model.ResolvedRule) {
	act := rule.Action
	mode, start := "transport", "trap"
	if rule.Tunnel.IsValid() {
		mode = "tunnel"
	}
	if r.o.Backend == LibIPsec {
		// libipsec on 5.9 has no transport mode and no acquires: a
		// host-to-host rule becomes a tunnel with host selectors, started
		// when loaded.
		mode, start = "tunnel", "start"
	}
	cs.Set("mode", mode)
	cs.Set("start_action", start)
	if len(act.AHInteg) > 0 {
		cs.SetList("ah_proposals", proposal(act.AHInteg, nil, act.PFSGroup))
	} else {
		cs.SetList("esp_proposals", proposal(act.ESPEnc, act.ESPInteg, act.PFSGroup))
	}
	if act.RekeySecs > 0 {
		cs.Set("rekey_time", strconv.FormatInt(act.RekeySecs, 10)+"s")
	}
	if act.RekeyKB > 0 {
		cs.Set("rekey_bytes", strconv.FormatInt(act.RekeyKB*1024, 10))
	}
	r.iface(cs, rule.Network)
}

func (r *renderer) iface(cs *Section, n model.Network) {
	if name := r.ifaceName(n); name != "" {
		cs.Set("interface", name)
	}
}

// ifaceName is the interface a rule's network type binds its policies
// to; "" for all interfaces (network "all", or "lan" without
// endpoint.lan_interface: then every interface counts as LAN).
func (r *renderer) ifaceName(n model.Network) string { return r.a.Endpoint.Interface(n) }

// proposal joins algorithm keywords into one strongSwan proposal string.
func proposal(enc, integ []string, group string) string {
	parts := append(append([]string{}, enc...), integ...)
	if group != "" {
		parts = append(parts, group)
	}
	return strings.Join(parts, "-")
}

// orient returns a filter seen from this endpoint: local side first. A
// filter whose destination is this computer (or, in a tunnel, whose
// source is not) is turned around, addresses and ports.
func orient(f model.ResolvedFilter) (local, remote model.Addr, lport, rport int) {
	if f.Dst.Kind == model.AddrMe && f.Src.Kind != model.AddrMe {
		return f.Dst, f.Src, f.DstPort, f.SrcPort
	}
	return f.Src, f.Dst, f.SrcPort, f.DstPort
}

// tsKind says how a selector is used.
type tsKind int

const (
	tsTransport tsKind = iota // host to host with the IKE peer
	tsTunnel                  // between networks behind tunnel endpoints
	tsShunt                   // a pass or drop policy, no IKE
)

func otherHost(f model.ResolvedFilter) string {
	if f.Src.Kind == model.AddrMe {
		return f.Dst.Host()
	}
	return f.Src.Host()
}

// selectors renders one side of a filter as traffic selectors. In a
// negotiate rule this computer and, without a tunnel, the IKE peer are
// "dynamic" (the IKE addresses), which is what transport mode needs and
// what makes DNS names work; everything else is written as prefixes.
func (r *renderer) selectors(side, opposite model.Addr, f model.ResolvedFilter, port int, kind tsKind) []string {
	var nets []string
	switch side.Kind {
	case model.AddrMe:
		if kind != tsShunt {
			nets = []string{"dynamic"}
		} else {
			nets = append(nets, r.myPrefixes(opposite)...)
		}
	case model.AddrDNS:
		nets = []string{"dynamic"}
	case model.AddrHost:
		if kind == tsTransport {
			nets = []string{"dynamic"}
		} else {
			nets = []string{side.Prefix.String()}
		}
	case model.AddrSubnet:
		nets = []string{side.Prefix.String()}
	case model.AddrAny:
		nets = r.anyPrefixes(opposite)
	}
	suffix := ""
	if p := f.ProtoString(); p != "" {
		suffix = "[" + p
		if port != model.AnyPort {
			suffix += "/" + strconv.Itoa(port)
		}
		suffix += "]"
	}
	for i := range nets {
		nets[i] += suffix
	}
	return nets
}

// myPrefixes returns this endpoint's addresses as host prefixes, of the
// family of the other side when it has one.
func (r *renderer) myPrefixes(opposite model.Addr) []string {
	var out []string
	for _, s := range r.a.Endpoint.Addresses {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if opposite.Prefix.IsValid() && opposite.Prefix.Addr().Is4() != ip.Is4() {
			continue
		}
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()).String())
	}
	return out
}

// anyPrefixes renders "any" in the families the other side can have: its
// own, or for "me" those of this endpoint's addresses.
func (r *renderer) anyPrefixes(opposite model.Addr) []string {
	var v4, v6 bool
	switch {
	case opposite.Prefix.IsValid():
		v4, v6 = opposite.Prefix.Addr().Is4(), !opposite.Prefix.Addr().Is4()
	case opposite.Kind == model.AddrMe:
		for _, s := range r.a.Endpoint.Addresses {
			if ip, err := netip.ParseAddr(s); err == nil {
				v4, v6 = v4 || ip.Is4(), v6 || !ip.Is4()
			}
		}
	default:
		v4, v6 = true, true
	}
	var out []string
	if v4 {
		out = append(out, "0.0.0.0/0")
	}
	if v6 {
		out = append(out, "::/0")
	}
	return out
}

// Policy priorities. In the kernel the policy with the lowest number
// wins. charon's own priorities (kernel-netlink's get_priority) come in
// bands: pass shunts below 200000, IPsec and trap policies below 400000,
// drop shunts below 600000, each lowered by 512 per prefix bit of the
// selectors, 256 for a protocol and 4 per port bit. So by default a pass
// shunt always beats an IPsec policy and a drop shunt always loses to one,
// whatever the selectors. Windows instead applies the most specific filter,
// whatever its action.
//
// swanmgr therefore sets every child's priority itself, inside charon's
// IPsec band and with the same weights: among swanmgr's policies the most
// specific filter wins, and towards connections loaded by others it
// behaves like any IPsec connection (their pass shunts still win, their
// drop shunts still lose).
const (
	prioBase   = 400000
	prioPerBit = 512 // per prefix bit, in IPv6 units (an IPv4 bit counts 4)
	prioProto  = 256
	prioPort   = 64 // per restricted port (charon: 4 per port mask bit)
	prioIface  = 16
	prioBlock  = 2 // equal specificity: block, then permit, then negotiate
	prioPermit = 1
)

// priority computes a child's policy priority from its filter. Prefix
// lengths are counted in IPv6 units (an IPv4 bit counts 4), so that one
// child holding both IPv4 and IPv6 selectors ("me" on a dual-stack
// endpoint) ranks the same in both families; IPv4 and IPv6 policies never
// compete with each other.
func (r *renderer) priority(f model.ResolvedFilter, rule model.ResolvedRule) int {
	score := (prefixBits(f.Src) + prefixBits(f.Dst)) * prioPerBit
	if f.Proto != 0 {
		score += prioProto
	}
	if f.SrcPort != model.AnyPort {
		score += prioPort
	}
	if f.DstPort != model.AnyPort {
		score += prioPort
	}
	if r.ifaceName(rule.Network) != "" {
		score += prioIface
	}
	switch rule.Action.Action {
	case model.Block:
		score += prioBlock
	case model.Permit:
		score += prioPermit
	}
	return prioBase - score
}

// prefixBits is the prefix length of one side of a filter in IPv6 units.
// "me" and a DNS name are one host.
func prefixBits(a model.Addr) int {
	switch a.Kind {
	case model.AddrMe, model.AddrDNS:
		return 128
	case model.AddrHost, model.AddrSubnet:
		if a.Prefix.Addr().Is4() {
			return a.Prefix.Bits() * 4
		}
		return a.Prefix.Bits()
	}
	return 0
}

// authMaterial adds the secrets, certificates and keys a connection's
// authentication needs, shared between connections where they are equal.
func (r *renderer) authMaterial(conn, peer string, auth []model.ResolvedAuth, line int, where string) {
	if len(auth) == 0 {
		return
	}
	a := auth[0]
	switch a.Method {
	case model.PSK:
		owners := []string{r.localID(peer)}
		if !isRange(peer) {
			owners = append(owners, peer)
		}
		key := strings.Join(owners, "\x00")
		if i, ok := r.secretIdx[key]; ok {
			// Validation guarantees the same peer has one key.
			r.res.Secrets[i].Conns = append(r.res.Secrets[i].Conns, conn)
			return
		}
		name := "ike-" + conn
		if !r.claimOf(name, claimed{"secret", where}, line, where) {
			return
		}
		r.secretIdx[key] = len(r.res.Secrets)
		r.res.Secrets = append(r.res.Secrets, Secret{Name: name, Type: "IKE", Owners: owners, Data: a.PSK, Conns: []string{conn}})
	case model.Certificate:
		r.addCert(a.CertPath, "NONE", a.Cert)
		r.addCert(a.CAPath, "CA", a.CA)
		for _, k := range r.res.Keys {
			if k.Path == a.KeyPath {
				return
			}
		}
		r.res.Keys = append(r.res.Keys, Key{Name: "private-" + conn, Path: a.KeyPath, Data: a.Key})
	}
}

func (r *renderer) addCert(path, flag string, data []byte) {
	for _, c := range r.res.Certs {
		if c.Path == path {
			return
		}
	}
	r.res.Certs = append(r.res.Certs, Cert{Path: path, Flag: flag, Data: data})
}
