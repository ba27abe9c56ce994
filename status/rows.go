package status

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// ruleMatch tells whether a rule passes --rule.
func (b *builder) ruleMatch(rule string) bool {
	return b.f.Rule == "" || strings.EqualFold(rule, b.f.Rule)
}

// connMatch tells whether one of the rules of a connection of swanmgr's
// passes --rule (all negotiate rules to one peer share its connection).
func (b *builder) connMatch(rc *assign.RecordConn) bool {
	for _, r := range render.Rules(rc.Origin, rc.Children) {
		if b.ruleMatch(r) {
			return true
		}
	}
	return false
}

// peerMatch tells whether one of the names of a peer passes --peer.
func (b *builder) peerMatch(names ...string) bool {
	if b.f.Peer == "" {
		return true
	}
	want, werr := netip.ParseAddr(b.f.Peer)
	for _, n := range names {
		if n == "" {
			continue
		}
		if werr == nil {
			if a, err := netip.ParseAddr(n); err == nil && a.Unmap() == want.Unmap() {
				return true
			}
		}
		if strings.EqualFold(n, b.f.Peer) {
			return true
		}
	}
	return false
}

// managedIKE returns the IKE_SAs of each connection, in charon's order.
func (b *builder) ikesByConn() map[string][]*vici.IKESA {
	out := map[string][]*vici.IKESA{}
	for i := range b.in.SAs {
		sa := &b.in.SAs[i]
		out[sa.Name] = append(out[sa.Name], sa)
	}
	return out
}

type childRef struct {
	ike   *vici.IKESA
	child *vici.ChildSA
}

func sortRefs(refs []childRef) {
	slices.SortStableFunc(refs, func(x, y childRef) int {
		if x.ike.UniqueID != y.ike.UniqueID {
			return cmpU(x.ike.UniqueID, y.ike.UniqueID)
		}
		return cmpU(x.child.UniqueID, y.child.UniqueID)
	})
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rowJob is a row to make: a CHILD_SA (ike, ch), or a rule filter
// without one (ch nil; ikes are its connection's IKE_SAs).
type rowJob struct {
	ike  *vici.IKESA
	ch   *vici.ChildSA
	cc   *connConfig
	co   *render.ChildOrigin
	ikes []*vici.IKESA
}

func (b *builder) saRows() []SA {
	return b.makeRows(b.rowJobs())
}

// makeRows makes the rows; thousands of them on every CPU.
func (b *builder) makeRows(jobs []rowJob) []SA {
	rows := make([]SA, len(jobs))
	workers := 1
	if len(jobs) >= 512 {
		workers = min(runtime.GOMAXPROCS(0), 8)
	}
	per := (len(jobs) + workers - 1) / max(workers, 1)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		lo, hi := k*per, min((k+1)*per, len(jobs))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := *b // the maps it shares are only read; the cache is its own
			w.secs = nil
			for i := lo; i < hi; i++ {
				j := jobs[i]
				if j.ch == nil {
					rows[i] = w.configRow(j.cc, j.co, j.ikes)
				} else {
					rows[i] = w.saRow(j.ike, j.ch, j.cc, j.co)
				}
			}
		}()
	}
	wg.Wait()
	return rows
}

// rowJobs lists the rows in the view's order: swanmgr's rules in policy
// order (each filter's SAs by IKE_SA and CHILD_SA id, or the filter alone),
// then the connections swanmgr did not load, by name.
func (b *builder) rowJobs() []rowJob {
	n := 0
	for _, ike := range b.in.SAs {
		n += len(ike.Children)
	}
	if rec := b.in.Record; rec != nil {
		for _, c := range rec.Conns {
			n += len(c.Children)
		}
	}
	rows := make([]rowJob, 0, n)
	byConn := b.ikesByConn()
	if rec := b.in.Record; rec != nil {
		for i := range rec.Conns {
			rc := &rec.Conns[i]
			if !b.connMatch(rc) {
				continue
			}
			cc := b.conns[rc.Name]
			ikes := byConn[rc.Name]
			byChild := map[string][]childRef{}
			for _, ike := range ikes {
				for k := range ike.Children {
					n := ike.Children[k].Name
					byChild[n] = append(byChild[n], childRef{ike, &ike.Children[k]})
				}
			}
			known := map[string]bool{}
			for ci := range rc.Children {
				co := &rc.Children[ci]
				known[co.Name] = true
				if !b.ruleMatch(co.RuleOf(rc.Origin)) {
					continue
				}
				refs := byChild[co.Name]
				sortRefs(refs)
				for _, r := range refs {
					if b.peerMatch(r.ike.RemoteHost, r.ike.RemoteID) {
						rows = append(rows, rowJob{ike: r.ike, ch: r.child, cc: cc, co: co})
					}
				}
				if len(refs) == 0 && b.peerMatch(rc.Origin.Peer) {
					rows = append(rows, rowJob{cc: cc, co: co, ikes: ikes})
				}
			}
			// CHILD_SAs of this connection that the record does not list
			// (a record older than the connection): shown without a filter.
			var extra []childRef
			for _, ike := range ikes {
				for k := range ike.Children {
					if !known[ike.Children[k].Name] {
						extra = append(extra, childRef{ike, &ike.Children[k]})
					}
				}
			}
			sortRefs(extra)
			for _, r := range extra {
				if b.peerMatch(r.ike.RemoteHost, r.ike.RemoteID) {
					rows = append(rows, rowJob{ike: r.ike, ch: r.child, cc: cc})
				}
			}
		}
	}
	if b.f.Rule != "" {
		return rows
	}
	var other []childRef
	for i := range b.in.SAs {
		ike := &b.in.SAs[i]
		if b.conns[ike.Name] != nil {
			continue
		}
		for k := range ike.Children {
			other = append(other, childRef{ike, &ike.Children[k]})
		}
	}
	slices.SortStableFunc(other, func(x, y childRef) int {
		if c := strings.Compare(x.ike.Name, y.ike.Name); c != 0 {
			return c
		}
		if x.ike.UniqueID != y.ike.UniqueID {
			return cmpU(x.ike.UniqueID, y.ike.UniqueID)
		}
		return cmpU(x.child.UniqueID, y.child.UniqueID)
	})
	for _, r := range other {
		if b.peerMatch(r.ike.RemoteHost, r.ike.RemoteID) {
			rows = append(rows, rowJob{ike: r.ike, ch: r.child})
		}
	}
	return rows
}

// origin fills in the policy columns of a row of swanmgr's connection.
func origin(r *SA, cc *connConfig, co *render.ChildOrigin) {
	if cc == nil {
		return
	}
	r.Managed = true
	r.Policy, r.Rule, r.FilterList, r.Action = cc.policy, cc.rule, cc.filterList, cc.action
	if co != nil {
		f := cc.filters[co.Name]
		r.Filter, r.FilterText = f.filter, f.text
		if f.rule != nil {
			r.Rule, r.FilterList = f.rule, f.filterList
		}
	}
}

func (b *builder) childConfig(cc *connConfig, child string) *childConfig {
	if cc == nil {
		return nil
	}
	return cc.children[child]
}

// rowValues hold what a row's pointers point to, in one allocation per
// row rather than one per value: a view of thousands of SAs is built on
// the path an operator waits for.
type rowValues struct {
	ikeID, childID                           uint64
	bytesIn, bytesOut, packetsIn, packetsOut uint64
	encap                                    bool
	peer, mode, spiIn, spiOut                string
	estAt, rekeyAt, expAt                    time.Time
	estS, rekeyS, expS                       int64
	sec                                      Security
}

// saRow is the row of a CHILD_SA.
func (b *builder) saRow(ike *vici.IKESA, ch *vici.ChildSA, cc *connConfig, co *render.ChildOrigin) SA {
	v := &rowValues{ikeID: ike.UniqueID, childID: ch.UniqueID, bytesIn: ch.BytesIn, bytesOut: ch.BytesOut,
		packetsIn: ch.PacketsIn, packetsOut: ch.PacketsOut, encap: ch.Encap,
		peer: ike.RemoteHost, mode: ch.Mode, spiIn: ch.SPIIn, spiOut: ch.SPIOut}
	r := SA{
		Connection: ike.Name,
		Child:      ch.Name,
		State:      ch.State,
		HasSA:      true,
		IKESAID:    &v.ikeID,
		ChildSAID:  &v.childID,
		Peer:       strPtr(&v.peer),
		Mode:       strPtr(&v.mode),
		UDPEncap:   &v.encap,
		BytesIn:    &v.bytesIn,
		BytesOut:   &v.bytesOut,
		PacketsIn:  &v.packetsIn,
		PacketsOut: &v.packetsOut,
	}
	origin(&r, cc, co)
	var lts, rts []render.TS
	r.Source, lts = endpoint(ch.LocalTS, nil)
	r.Destination, rts = endpoint(ch.RemoteTS, nil)
	r.Protocol = protocol(lts, rts)
	v.sec = *b.security(ch, cc)
	v.sec.SPIIn, v.sec.SPIOut = strPtr(&v.spiIn), strPtr(&v.spiOut)
	r.Security = &v.sec
	v.estAt, v.estS = b.now.Add(-ch.InstallTime), int64(ch.InstallTime/time.Second)
	r.EstablishedAt, r.EstablishedSeconds = &v.estAt, &v.estS
	if ch.RekeyTime != 0 {
		v.rekeyAt, v.rekeyS = b.now.Add(ch.RekeyTime), int64(ch.RekeyTime/time.Second)
		r.RekeyAt, r.RekeyInSeconds = &v.rekeyAt, &v.rekeyS
	}
	if ch.LifeTime != 0 {
		v.expAt, v.expS = b.now.Add(ch.LifeTime), int64(ch.LifeTime/time.Second)
		r.ExpiresAt, r.ExpiresInSeconds = &v.expAt, &v.expS
	}

	// A tunnel whose selectors are the two IKE addresses has no tunnel
	// endpoint in Windows' sense: it is how swanmgr renders a rule
	// without one on the libipsec backend (dynamic selectors).
	hostToHost := false
	if !strings.HasPrefix(ch.Mode, "TRANSPORT") && ch.Mode != "BEET" {
		hostToHost = singleHost(ch.LocalTS, ike.LocalHost) && singleHost(ch.RemoteTS, ike.RemoteHost)
		if !hostToHost {
			r.TunnelEndpoint = optStr(ike.RemoteHost)
		}
	}
	if cc != nil && co == nil {
		r.Note = ptr(fmt.Sprintf("child %q is not in swanmgr's record (the connection changed after the last apply?)", ch.Name))
	}
	r.HostToHostTunnel = hostToHost && ch.Mode == "TUNNEL"
	return r
}

// configRow is the row of a rule filter that has no CHILD_SA.
func (b *builder) configRow(cc *connConfig, co *render.ChildOrigin, ikes []*vici.IKESA) SA {
	o := cc.rc.Origin
	r := SA{Connection: cc.rc.Name, Child: co.Name, Peer: optStr(o.Peer)}
	origin(&r, cc, co)
	chc := b.childConfig(cc, co.Name)
	peerAddrs := cc.remoteAddrs
	if o.Peer != "" && o.Peer != "%any" {
		peerAddrs = []string{o.Peer}
	}
	if chc != nil {
		var lts, rts []render.TS
		r.Source, lts = endpoint(chc.localTS, cc.localAddrs)
		r.Destination, rts = endpoint(chc.remoteTS, peerAddrs)
		r.Protocol = protocol(lts, rts)
		r.Mode = optStr(strings.ToUpper(chc.mode))
		if chc.mode == "tunnel" {
			if dynamicOnly(chc.localTS) && dynamicOnly(chc.remoteTS) {
				r.HostToHostTunnel = true
			} else {
				r.TunnelEndpoint = optStr(o.Peer)
			}
		}
		r.Security = configuredSecurity(chc)
	} else {
		r.Source = Endpoint{Addresses: []string{}, Selectors: []string{}}
		r.Destination = Endpoint{Addresses: []string{}, Selectors: []string{}}
	}
	peer := o.Peer
	if peer == "" {
		peer = "the peer"
	}
	switch {
	case b.loaded != nil && !b.loaded[cc.rc.Name]:
		r.State = StateNotLoaded
		r.Note = ptr(fmt.Sprintf("charon does not have connection %q (it restarted, or the connection was unloaded by hand): run swanmgr apply", cc.rc.Name))
	case o.Action == "permit":
		r.State = StatePermit
		r.Note = ptr("pass shunt: matching traffic goes in clear, no SA is negotiated")
	case o.Action == "block":
		r.State = StateBlock
		r.Note = ptr("drop shunt: matching traffic is dropped, no SA is negotiated")
	default:
		r.State = StateNotEstablished
		var connecting, up *vici.IKESA
		for _, ike := range ikes {
			switch {
			case ike.State == "CONNECTING" && connecting == nil:
				connecting = ike
			case ike.State == "ESTABLISHED" && (up == nil || creatingChild(ike)):
				up = ike
			}
		}
		switch {
		case connecting != nil:
			r.State = StateNegotiating
			r.Note = ptr(fmt.Sprintf("IKE_SA #%d with %s is being negotiated", connecting.UniqueID, connecting.RemoteHost))
		case up != nil && creatingChild(up):
			r.State = StateNegotiating
			r.Note = ptr(fmt.Sprintf("IKE_SA #%d with %s is up and creating CHILD_SAs", up.UniqueID, up.RemoteHost))
		case up != nil:
			r.Note = ptr(fmt.Sprintf("IKE_SA #%d with %s is up but has no CHILD_SA for this filter: the peer refused it (filters that do not mirror, proposals), or it was closed", up.UniqueID, up.RemoteHost))
		case o.RuleIndex < 0:
			r.Note = ptr("default response rule: answers any peer; none has negotiated")
		default:
			r.Note = ptr(fmt.Sprintf("no IKE_SA with %s", peer))
		}
	}
	return r
}

// creatingChild tells an IKE_SA that has a CHILD_SA negotiation running or
// queued.
func creatingChild(ike *vici.IKESA) bool {
	for _, ts := range [][]string{ike.TasksActive, ike.TasksQueued} {
		if slices.Contains(ts, "CHILD_CREATE") || slices.Contains(ts, "QUICK_MODE") {
			return true
		}
	}
	return false
}

// dynamicOnly tells configured selectors that are all the IKE address:
// a host-to-host rule (no tunnel endpoint).
func dynamicOnly(ts []string) bool {
	if len(ts) == 0 {
		return false
	}
	for _, s := range ts {
		if s != "dynamic" && !strings.HasPrefix(s, "dynamic[") {
			return false
		}
	}
	return true
}

// singleHost tells selectors that cover exactly one host, the given one.
func singleHost(ts []string, host string) bool {
	h, err := netip.ParseAddr(host)
	if err != nil || len(ts) != 1 {
		return false
	}
	t, err := render.ParseTS(ts[0])
	if err != nil || t.Dynamic {
		return false
	}
	return t.Prefix.IsSingleIP() && t.Prefix.Addr().Unmap() == h.Unmap()
}

// endpoint summarizes one side's selectors. "dynamic" is shown as the
// addresses given (the IKE addresses of a configured connection). It also
// returns the selectors it could read.
func endpoint(ts []string, dynamic []string) (Endpoint, []render.TS) {
	e := Endpoint{Addresses: make([]string, 0, 1), Selectors: make([]string, 0, len(ts))}
	parsed := make([]render.TS, 0, len(ts))
	add := func(addr, sel string) {
		if !slices.Contains(e.Addresses, addr) {
			e.Addresses = append(e.Addresses, addr)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	consistent := true
	for _, s := range ts {
		t, err := render.ParseTS(s)
		if err != nil {
			// A selector charon wrote that we cannot read (an unknown
			// service name): shown as charon wrote it.
			addr, _, _ := strings.Cut(s, "[")
			add(addr, s)
			consistent = false
			continue
		}
		parsed = append(parsed, t)
		if !t.Dynamic {
			add(addrAndSel(t))
			continue
		}
		if len(dynamic) == 0 {
			add("dynamic", selText(t))
			continue
		}
		for _, d := range dynamic {
			if a, err := netip.ParseAddr(d); err == nil {
				add(addrAndSel(t.Resolve(a)))
			} else {
				add(d, d+strings.TrimPrefix(selText(t), "dynamic"))
			}
		}
	}
	if !consistent || len(parsed) == 0 {
		return e, parsed
	}
	lo, hi := parsed[0].PortLo, parsed[0].PortHi
	for _, t := range parsed[1:] {
		if t.PortLo != lo || t.PortHi != hi {
			return e, parsed
		}
	}
	switch {
	case lo == 0 && hi == 65535:
		e.AnyPort = true
	case lo == hi:
		e.Port = ptr(lo)
	default:
		e.PortRange = &[2]int{lo, hi}
	}
	return e, parsed
}

// addrAndSel returns a resolved selector's address column (a host
// without its prefix length) and the selector (selText), formatting the
// address once.
func addrAndSel(t render.TS) (addr, sel string) {
	a := t.Prefix.Addr().String()
	prefix := a + "/" + strconv.Itoa(t.Prefix.Bits())
	addr = prefix
	if t.Prefix.IsSingleIP() {
		addr = a
	}
	return addr, prefix + selSuffix(t)
}

// selText writes a selector as charon does, with port numbers:
// 10.0.0.0/8[tcp/443], 192.0.2.1/32[udp], 0.0.0.0/0 (render.TS.String's
// format, without its formatting costs).
func selText(t render.TS) string {
	if t.Dynamic {
		return "dynamic" + selSuffix(t)
	}
	return t.Prefix.String() + selSuffix(t)
}

// selSuffix is a selector's protocol and ports: [tcp/443], [udp], "".
func selSuffix(t render.TS) string {
	if t.Proto == 0 && t.PortLo == 0 && t.PortHi == 65535 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('[')
	if t.Proto == 0 {
		b.WriteString("%any")
	} else {
		b.WriteString(render.ProtoName(t.Proto))
	}
	switch {
	case t.PortLo == 0 && t.PortHi == 65535:
	case t.PortLo == t.PortHi:
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(t.PortLo))
	default:
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(t.PortLo))
		b.WriteByte('-')
		b.WriteString(strconv.Itoa(t.PortHi))
	}
	b.WriteByte(']')
	return b.String()
}

// addrText writes a host prefix as its address, a network in CIDR form.
func addrText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// protocol is the IP protocol of a CHILD_SA's selectors; nil for any.
func protocol(sides ...[]render.TS) *string {
	for _, ts := range sides {
		for _, t := range ts {
			if t.Proto != 0 {
				return ptr(render.ProtoName(t.Proto))
			}
		}
	}
	return nil
}

// strPtr points to s, nil when it is empty.
func strPtr(s *string) *string {
	if *s == "" {
		return nil
	}
	return s
}
