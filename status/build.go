package status

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// Input is what a view is built from: charon's answers, collected at one
// time (Time), and swanmgr's record of what it assigned to this charon.
// An answer that failed has its error set and its value nil.
type Input struct {
	Time time.Time
	// Location is the time zone of charon's clock (its stats give the
	// start time as local time); nil is UTC.
	Location *time.Location
	Socket   string
	Record   *assign.Record // nil: swanmgr assigned nothing here
	// RecordErr: the record could not be read. Build refuses it: a view
	// that called every rule "not managed" would be wrong.
	RecordErr error

	// DaemonErr is set when charon could not be asked at all (not
	// running, restarting, list-sas failed): nothing else is then known.
	DaemonErr error

	SAs []vici.IKESA
	// Loaded are the connections loaded over VICI (get-conns), to tell a
	// rule whose connection charon lost ("not loaded").
	Loaded    []string
	LoadedErr error
	// Conns (list-conns) give the authentication classes of connections
	// swanmgr did not load; those of its own come from the record.
	Conns       []vici.ConnInfo
	ConnsErr    error
	Stats       *vici.Stats
	StatsErr    error
	Version     *vici.Version
	VersionErr  error
	Counters    map[string]uint64
	CountersErr error // matches vici.ErrUnsupported without the counters plugin

	// Events are swanmgr's own counts from charon's events (status
	// --watch, metrics); nil when nothing was counted.
	Events *EventCounts
}

// ErrUnknownRule is matched by Build's error for a --rule the assigned
// policy does not have, or a --rule without an assigned policy.
var ErrUnknownRule = errors.New("no such rule")

type unknownRuleError struct{ msg string }

func (e *unknownRuleError) Error() string { return e.msg }
func (e *unknownRuleError) Unwrap() error { return ErrUnknownRule }

// Build joins charon's answers with swanmgr's record into a view, narrowed
// to the rows f selects.
func Build(in Input, f Filter) (*Status, error) {
	b := &builder{in: in, f: f, now: in.Time.UTC().Truncate(time.Second)}
	return b.build()
}

type builder struct {
	in  Input
	f   Filter
	now time.Time // charon's figures are in seconds: times derived from them are too

	conns  map[string]*connConfig // swanmgr's connections by name
	loaded map[string]bool        // nil when get-conns failed
}

// connConfig is what swanmgr loaded for a connection, from its record.
type connConfig struct {
	rc *assign.RecordConn
	// The origin columns, shared by the rows of the connection (the
	// model is read-only).
	policy, rule, filterList, action *string
	filters                          map[string]childOrigin
	localAddrs                       []string
	remoteAddrs                      []string
	authLocal                        string
	authRemote                       string
	children                         map[string]*childConfig
}

type childOrigin struct {
	filter *int
	text   *string
}

type childConfig struct {
	localTS, remoteTS []string
	mode              string // tunnel, transport, pass, drop
	proposals         []string
	ah                bool
}

func (b *builder) build() (*Status, error) {
	in := b.in
	if in.RecordErr != nil {
		return nil, in.RecordErr
	}
	st := &Status{
		SchemaVersion: SchemaVersion,
		Time:          in.Time.UTC(),
		Socket:        in.Socket,
		Filter:        b.f,
		SAs:           []SA{},
		IKESAs:        []IKESA{},
		Warnings:      []string{},
	}
	rec := in.Record
	if rec != nil {
		p := &Policy{Name: rec.Policy, Source: rec.Source, Backend: rec.Backend, AppliedAt: rec.AppliedAt.UTC(), Rules: []string{}}
		for _, c := range rec.Conns {
			if !slices.Contains(p.Rules, c.Origin.Rule) {
				p.Rules = append(p.Rules, c.Origin.Rule)
			}
		}
		st.Policy = p
	}
	if err := b.checkRule(); err != nil {
		return nil, err
	}
	b.readRecord()
	st.Daemon = b.daemon()
	st.Statistics = b.statistics()
	if in.DaemonErr != nil {
		return st, nil
	}
	for _, w := range []struct {
		what string
		err  error
	}{
		{"get-conns", in.LoadedErr}, {"list-conns", in.ConnsErr}, {"stats", in.StatsErr},
		{"version", in.VersionErr}, {"get-counters", in.CountersErr},
	} {
		if w.err != nil && !errors.Is(w.err, vici.ErrUnsupported) {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s failed: %v", w.what, w.err))
		}
	}
	if in.Counters != nil {
		st.Counters = in.Counters
	}
	if in.LoadedErr == nil && in.Loaded != nil {
		b.loaded = map[string]bool{}
		for _, n := range in.Loaded {
			b.loaded[n] = true
		}
	}
	st.SAs = b.saRows()
	st.IKESAs = b.ikeRows()
	return st, nil
}

func (b *builder) checkRule() error {
	if b.f.Rule == "" {
		return nil
	}
	rec := b.in.Record
	if rec == nil || len(rec.Conns) == 0 {
		return &unknownRuleError{fmt.Sprintf("--rule %q: swanmgr has assigned no policy to charon at %s", b.f.Rule, b.in.Socket)}
	}
	var rules []string
	for _, c := range rec.Conns {
		if strings.EqualFold(c.Origin.Rule, b.f.Rule) {
			return nil
		}
		if !slices.Contains(rules, c.Origin.Rule) {
			rules = append(rules, c.Origin.Rule)
		}
	}
	q := make([]string, len(rules))
	for i, r := range rules {
		q[i] = strconv.Quote(r)
	}
	return &unknownRuleError{fmt.Sprintf("policy %q has no rule %q (rules: %s)", rec.Policy, b.f.Rule, strings.Join(q, ", "))}
}

// readRecord indexes swanmgr's connections and their settings.
func (b *builder) readRecord() {
	b.conns = map[string]*connConfig{}
	if b.in.Record == nil {
		return
	}
	for i := range b.in.Record.Conns {
		rc := &b.in.Record.Conns[i]
		o := rc.Origin
		cc := &connConfig{rc: rc, children: map[string]*childConfig{}, filters: map[string]childOrigin{},
			policy: ptr(o.Policy), rule: ptr(o.Rule), filterList: optStr(o.FilterList), action: optStr(o.Action)}
		for _, co := range rc.Children {
			var f childOrigin
			if co.FilterIndex >= 0 {
				f.filter = ptr(co.FilterIndex + 1)
			}
			f.text = optStr(co.Summary)
			cc.filters[co.Name] = f
		}
		if body := rc.Body; body != nil {
			cc.localAddrs = listOf(body, "local_addrs")
			cc.remoteAddrs = listOf(body, "remote_addrs")
			cc.authLocal = authClass(valueOf(sub(body, "local"), "auth"))
			cc.authRemote = authClass(valueOf(sub(body, "remote"), "auth"))
			if children := sub(body, "children"); children != nil {
				for _, it := range children.Items {
					if it.Sec == nil {
						continue
					}
					chc := &childConfig{
						localTS:  listOf(it.Sec, "local_ts"),
						remoteTS: listOf(it.Sec, "remote_ts"),
						mode:     valueOf(it.Sec, "mode"),
					}
					if p := listOf(it.Sec, "ah_proposals"); len(p) > 0 {
						chc.proposals, chc.ah = p, true
					} else {
						chc.proposals = listOf(it.Sec, "esp_proposals")
					}
					if chc.mode == "" {
						chc.mode = "tunnel" // swanctl's default
					}
					cc.children[it.Key] = chc
				}
			}
		}
		b.conns[rc.Name] = cc
	}
}

func sub(s *render.Section, key string) *render.Section {
	if s == nil {
		return nil
	}
	if it := s.Get(key); it != nil {
		return it.Sec
	}
	return nil
}

func listOf(s *render.Section, key string) []string {
	if s == nil {
		return nil
	}
	if it := s.Get(key); it != nil {
		if it.IsList {
			return it.List
		}
		if it.Value != "" {
			return []string{it.Value}
		}
	}
	return nil
}

func valueOf(s *render.Section, key string) string {
	if s == nil {
		return ""
	}
	if it := s.Get(key); it != nil {
		return it.Value
	}
	return ""
}

// ruleMatch tells whether a rule passes --rule.
func (b *builder) ruleMatch(rule string) bool {
	return b.f.Rule == "" || strings.EqualFold(rule, b.f.Rule)
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

func (b *builder) saRows() []SA {
	n := 0
	for _, ike := range b.in.SAs {
		n += len(ike.Children)
	}
	if rec := b.in.Record; rec != nil {
		for _, c := range rec.Conns {
			n += len(c.Children)
		}
	}
	rows := make([]SA, 0, n)
	byConn := b.ikesByConn()
	if rec := b.in.Record; rec != nil {
		for i := range rec.Conns {
			rc := &rec.Conns[i]
			if !b.ruleMatch(rc.Origin.Rule) {
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
				refs := byChild[co.Name]
				sortRefs(refs)
				for _, r := range refs {
					if b.peerMatch(r.ike.RemoteHost, r.ike.RemoteID) {
						rows = append(rows, b.saRow(r.ike, r.child, cc, co))
					}
				}
				if len(refs) == 0 && b.peerMatch(rc.Origin.Peer) {
					rows = append(rows, b.configRow(cc, co, ikes))
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
					rows = append(rows, b.saRow(r.ike, r.child, cc, nil))
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
			rows = append(rows, b.saRow(r.ike, r.child, nil, nil))
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
	}
}

func (b *builder) childConfig(cc *connConfig, child string) *childConfig {
	if cc == nil {
		return nil
	}
	return cc.children[child]
}

// saRow is the row of a CHILD_SA.
func (b *builder) saRow(ike *vici.IKESA, ch *vici.ChildSA, cc *connConfig, co *render.ChildOrigin) SA {
	r := SA{
		Connection: ike.Name,
		Child:      ch.Name,
		State:      ch.State,
		HasSA:      true,
		IKESAID:    ptr(ike.UniqueID),
		ChildSAID:  ptr(ch.UniqueID),
		Peer:       optStr(ike.RemoteHost),
		Mode:       optStr(ch.Mode),
		UDPEncap:   ptr(ch.Encap),
		BytesIn:    ptr(ch.BytesIn),
		BytesOut:   ptr(ch.BytesOut),
		PacketsIn:  ptr(ch.PacketsIn),
		PacketsOut: ptr(ch.PacketsOut),
	}
	origin(&r, cc, co)
	chc := b.childConfig(cc, ch.Name)
	var lts, rts []render.TS
	r.Source, lts = endpoint(ch.LocalTS, nil)
	r.Destination, rts = endpoint(ch.RemoteTS, nil)
	r.Protocol = protocol(lts, rts)
	r.Security = childSecurity(*ch, chc)
	r.EstablishedAt, r.EstablishedSeconds = b.ago(ch.InstallTime)
	r.RekeyAt, r.RekeyInSeconds = b.in_(ch.RekeyTime)
	r.ExpiresAt, r.ExpiresInSeconds = b.in_(ch.LifeTime)

	hostToHost := false
	switch {
	case strings.HasPrefix(ch.Mode, "TRANSPORT") || ch.Mode == "BEET":
	case chc != nil:
		hostToHost = dynamicOnly(chc.localTS) && dynamicOnly(chc.remoteTS)
		if !hostToHost {
			r.TunnelEndpoint = optStr(ike.RemoteHost)
		}
	default:
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
	t, err := parseTS(ts[0])
	if err != nil || t.Dynamic {
		return false
	}
	return t.Prefix.IsSingleIP() && t.Prefix.Addr().Unmap() == h.Unmap()
}

// parseTS reads a traffic selector as charon writes it. charon names
// ports by /etc/services; render.ParseTS takes a dash in such a name
// ("tcp/zabbix-agent", 10050) for a port range, so a name is looked up
// whole first.
func parseTS(s string) (render.TS, error) {
	open := strings.IndexByte(s, '[')
	slash := strings.LastIndexByte(s, '/')
	if open >= 0 && slash > open && strings.HasSuffix(s, "]") {
		proto, port := s[open+1:slash], s[slash+1:len(s)-1]
		if strings.ContainsAny(port, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.Contains(port, "-") {
			network := "tcp"
			if proto == "udp" {
				network = "udp"
			}
			if n, err := net.LookupPort(network, port); err == nil {
				s = s[:slash+1] + strconv.Itoa(n) + "]"
			}
		}
	}
	return render.ParseTS(s)
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
		t, err := parseTS(s)
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
			add(addrText(t.Prefix), selText(t))
			continue
		}
		if len(dynamic) == 0 {
			add("dynamic", selText(t))
			continue
		}
		for _, d := range dynamic {
			if a, err := netip.ParseAddr(d); err == nil {
				rt := t.Resolve(a)
				add(addrText(rt.Prefix), selText(rt))
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

// selText writes a selector as charon does, with port numbers:
// 10.0.0.0/8[tcp/443], 192.0.2.1/32[udp], 0.0.0.0/0 (render.TS.String's
// format, without its formatting costs).
func selText(t render.TS) string {
	var b strings.Builder
	if t.Dynamic {
		b.WriteString("dynamic")
	} else {
		b.WriteString(t.Prefix.String())
	}
	if t.Proto == 0 && t.PortLo == 0 && t.PortHi == 65535 {
		return b.String()
	}
	b.WriteByte('[')
	if t.Proto == 0 {
		b.WriteString("%any")
	} else {
		b.WriteString(protoName(t.Proto))
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
				return ptr(protoName(t.Proto))
			}
		}
	}
	return nil
}

func protoName(n int) string {
	switch n {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(n)
}

// ago turns charon's "seconds since" into a time and seconds.
func (b *builder) ago(d time.Duration) (*time.Time, *int64) {
	return ptr(b.now.Add(-d)), ptr(int64(d / time.Second))
}

// in_ turns charon's "seconds until" into a time and seconds; charon
// leaves the value out (0 here) when nothing is scheduled. A negative
// value is overdue.
func (b *builder) in_(d time.Duration) (*time.Time, *int64) {
	if d == 0 {
		return nil, nil
	}
	return ptr(b.now.Add(d)), ptr(int64(d / time.Second))
}

func (b *builder) ikeRows() []IKESA {
	rows := []IKESA{}
	var managed, other []*vici.IKESA
	order := map[string]int{}
	if rec := b.in.Record; rec != nil {
		for i, c := range rec.Conns {
			order[c.Name] = i
		}
	}
	for i := range b.in.SAs {
		sa := &b.in.SAs[i]
		if cc := b.conns[sa.Name]; cc != nil {
			if b.ruleMatch(cc.rc.Origin.Rule) {
				managed = append(managed, sa)
			}
		} else if b.f.Rule == "" {
			other = append(other, sa)
		}
	}
	slices.SortStableFunc(managed, func(x, y *vici.IKESA) int {
		if order[x.Name] != order[y.Name] {
			return order[x.Name] - order[y.Name]
		}
		return cmpU(x.UniqueID, y.UniqueID)
	})
	slices.SortStableFunc(other, func(x, y *vici.IKESA) int {
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return cmpU(x.UniqueID, y.UniqueID)
	})
	conns := map[string]*vici.ConnInfo{}
	for i := range b.in.Conns {
		conns[b.in.Conns[i].Name] = &b.in.Conns[i]
	}
	for _, sa := range append(managed, other...) {
		if !b.peerMatch(sa.RemoteHost, sa.RemoteID) {
			continue
		}
		r := IKESA{
			Connection:   sa.Name,
			IKESAID:      sa.UniqueID,
			State:        sa.State,
			Version:      optInt(sa.Version),
			Initiator:    sa.Initiator,
			Local:        IKEEndpoint{Address: sa.LocalHost, Port: optInt(int(sa.LocalPort)), ID: sa.LocalID},
			Remote:       IKEEndpoint{Address: sa.RemoteHost, Port: optInt(int(sa.RemotePort)), ID: sa.RemoteID},
			Algorithms:   ikeAlgorithms(*sa),
			NAT:          NAT{Local: sa.NATLocal, Remote: sa.NATRemote, Fake: sa.NATFake, Any: sa.NATAny},
			ChildSAs:     len(sa.Children),
			InitiatorSPI: sa.InitiatorSPI,
			ResponderSPI: sa.ResponderSPI,
		}
		if cc := b.conns[sa.Name]; cc != nil {
			r.Managed = true
			r.Policy = ptr(cc.rc.Origin.Policy)
			r.Rule = ptr(cc.rc.Origin.Rule)
			r.AuthLocal, r.AuthRemote = optStr(cc.authLocal), optStr(cc.authRemote)
		} else if ci := conns[sa.Name]; ci != nil {
			if len(ci.Local) > 0 {
				r.AuthLocal = optStr(ci.Local[0].Class)
			}
			if len(ci.Remote) > 0 {
				r.AuthRemote = optStr(ci.Remote[0].Class)
			}
		}
		if sa.State == "ESTABLISHED" {
			r.EstablishedAt, r.EstablishedSeconds = b.ago(sa.Established)
		}
		r.RekeyAt, r.RekeyInSeconds = b.in_(sa.RekeyTime)
		r.ReauthAt, r.ReauthInSeconds = b.in_(sa.ReauthTime)
		rows = append(rows, r)
	}
	return rows
}

// charonTimeLayout is how charon's stats write its start time (%T).
const charonTimeLayout = "Jan _2 15:04:05 2006"

func (b *builder) daemon() DaemonInfo {
	in := b.in
	d := DaemonInfo{Reachable: in.DaemonErr == nil}
	if in.DaemonErr != nil {
		d.Error = ptr(in.DaemonErr.Error())
		return d
	}
	if v := in.Version; v != nil {
		d.Name, d.Version = optStr(v.Daemon), optStr(v.Version)
		d.Sysname, d.Release, d.Machine = optStr(v.Sysname), optStr(v.Release), optStr(v.Machine)
	}
	if s := in.Stats; s != nil && s.UptimeSince != "" {
		loc := in.Location
		if loc == nil {
			loc = time.UTC
		}
		if t, err := time.ParseInLocation(charonTimeLayout, s.UptimeSince, loc); err == nil {
			t = t.UTC()
			d.StartedAt = &t
			up := int64(max(b.now.Sub(t), 0) / time.Second)
			d.UptimeSeconds = &up
		}
	}
	d.CountersPlugin = in.Counters != nil
	return d
}

// activeState tells a CHILD_SA whose keys are in the IPsec stack.
func activeState(s string) bool {
	return s == "INSTALLED" || s == "REKEYING" || s == "REKEYED" || s == "UPDATING"
}

func (b *builder) statistics() Statistics {
	in := b.in
	var s Statistics
	if in.DaemonErr != nil {
		for _, f := range s.figures() {
			f.fig.Note = "daemon unavailable"
		}
		return s
	}
	var active, confOut, confIn, authOut, authIn uint64
	for _, ike := range in.SAs {
		for _, ch := range ike.Children {
			if activeState(ch.State) {
				active++
			}
			if confidential(ch) {
				confOut += ch.BytesOut
				confIn += ch.BytesIn
			} else {
				authOut += ch.BytesOut
				authIn += ch.BytesIn
			}
		}
	}
	now := func(v uint64, note string) Figure {
		return Figure{Value: ptr(v), Source: ptr(SourceListSAs), Note: note}
	}
	s.ActiveAssociations = now(active, "CHILD_SAs installed now (INSTALLED, UPDATING, REKEYING, REKEYED)")
	const present = "of the SAs present now: charon forgets the bytes of closed SAs"
	s.ConfidentialBytesSent = now(confOut, "ESP with encryption, "+present)
	s.ConfidentialBytesReceived = now(confIn, "ESP with encryption, "+present)
	s.AuthenticatedBytesSent = now(authOut, "integrity only (AH, ESP with NULL or AES-GMAC), "+present)
	s.AuthenticatedBytesReceived = now(authIn, "integrity only (AH, ESP with NULL or AES-GMAC), "+present)

	if st := in.Stats; st != nil {
		s.HalfOpenIKESAs = Figure{Value: ptr(st.IKESAsHalfOpen), Source: ptr(SourceStats), Note: "IKE_SAs being set up now"}
		s.IKESAs = Figure{Value: ptr(st.IKESAsTotal), Source: ptr(SourceStats), Note: "IKE_SAs now"}
	} else {
		s.HalfOpenIKESAs.Note = "stats failed"
		s.IKESAs.Note = "stats failed"
	}

	ev := in.Events
	counted := func(v uint64, what string) Figure {
		since := ev.Since.UTC()
		return Figure{Value: ptr(v), Source: ptr(SourceEvents), Since: &since,
			Note: "counted by swanmgr from charon's " + what + " events since it started watching"}
	}
	if c := in.Counters; c != nil {
		ike := c["ike-rekey-init"] + c["ike-rekey-resp"]
		child := c["child-rekey"]
		f := Figure{Value: ptr(ike + child), Source: ptr(SourceCounters),
			Note: fmt.Sprintf("IKE_SA %d, CHILD_SA %d, since charon started (counters plugin)", ike, child)}
		if b.in.Stats != nil {
			if d := b.daemon(); d.StartedAt != nil {
				f.Since = d.StartedAt
			}
		}
		s.Rekeys = f
	} else if ev != nil {
		s.Rekeys = counted(ev.IKERekeys+ev.ChildRekeys, "ike-rekey and child-rekey")
		s.Rekeys.Note += fmt.Sprintf(" (IKE_SA %d, CHILD_SA %d; charon's counters plugin is not loaded)", ev.IKERekeys, ev.ChildRekeys)
	} else {
		s.Rekeys.Note = "charon's counters plugin is not loaded; status --watch and metrics count them from events"
	}
	if ev != nil {
		s.KeyAdditions = counted(ev.ChildUp+ev.ChildRekeys, "child-updown and child-rekey")
		s.KeyAdditions.Note = "CHILD_SA keys installed (new and rekeyed), " + s.KeyAdditions.Note
		s.MainModes = counted(ev.IKEUp, "ike-updown")
		s.MainModes.Note = "IKE_SAs established, " + s.MainModes.Note
		s.QuickModes = counted(ev.ChildUp, "child-updown")
		s.QuickModes.Note = "CHILD_SAs established (rekeys not included), " + s.QuickModes.Note
		s.AuthenticationFailures = counted(ev.AuthFailures, "log")
		s.AuthenticationFailures.Note = "IKE messages with an AUTHENTICATION_FAILED notify, sent or received, " + s.AuthenticationFailures.Note
		since := ev.Since.UTC()
		s.EventsCountedSince = &since
		s.EventsReconnects = ev.Reconnects
	} else {
		const why = "charon does not count them; status --watch and metrics count them from its events"
		s.KeyAdditions.Note = why
		s.MainModes.Note = why
		s.QuickModes.Note = why
		s.AuthenticationFailures.Note = "charon 5.9 does not count them; status --watch and metrics count them from its log events"
	}
	return s
}

type namedFigure struct {
	label string
	fig   *Figure
}

// figures lists the statistics in IPSecMon's order with their labels.
func (s *Statistics) figures() []namedFigure {
	return []namedFigure{
		{"Active Associations", &s.ActiveAssociations},
		{"Confidential Bytes Sent", &s.ConfidentialBytesSent},
		{"Confidential Bytes Received", &s.ConfidentialBytesReceived},
		{"Authenticated Bytes Sent", &s.AuthenticatedBytesSent},
		{"Authenticated Bytes Received", &s.AuthenticatedBytesReceived},
		{"Key Additions", &s.KeyAdditions},
		{"Rekeys", &s.Rekeys},
		{"Main Modes (IKE_SAs established)", &s.MainModes},
		{"Quick Modes (CHILD_SAs established)", &s.QuickModes},
		{"Authentication Failures", &s.AuthenticationFailures},
		{"Half-open IKE_SAs", &s.HalfOpenIKESAs},
		{"IKE_SAs", &s.IKESAs},
	}
}
