package status

import (
	"errors"
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
	// rule whose connection charon lost ("not loaded"). Empty (or nil)
	// with LoadedErr nil means charon has none; set LoadedErr when
	// get-conns could not be asked.
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

	// secs shares the description of equal protection between rows
	// (without the SPIs, which each row sets).
	secs map[secKey]*Security

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
	children                         map[string]*childConfig // empty without the record's bodies
	// The rule's PFS group ("" for none) when known: from the record's
	// bodies, or from the connection's SAs (see inferPFS).
	pfsKnown bool
	pfsGroup string
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
	// An empty get-conns (charon restarted, nothing loaded) is as good an
	// answer as a full one: every rule is then "not loaded". Only a
	// failed get-conns leaves it unknown.
	if in.LoadedErr == nil {
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
	psk := map[string]bool{}
	for _, sec := range b.in.Record.Secrets {
		for _, c := range sec.Conns {
			psk[c] = true
		}
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
		// swanmgr renders preshared keys (with a secret) or certificates.
		if o.Action == "negotiate" {
			cc.authLocal, cc.authRemote = "public key", "public key"
			if psk[rc.Name] {
				cc.authLocal, cc.authRemote = "pre-shared key", "pre-shared key"
			}
		}
		if body := rc.Body; body != nil {
			cc.localAddrs = body.List("local_addrs")
			cc.remoteAddrs = body.List("remote_addrs")
			cc.authLocal = authClass(body.Subsection("local").Value("auth"))
			cc.authRemote = authClass(body.Subsection("remote").Value("auth"))
			if children := body.Subsection("children"); children != nil {
				for _, it := range children.Items {
					if it.Sec == nil {
						continue
					}
					chc := &childConfig{
						localTS:  it.Sec.List("local_ts"),
						remoteTS: it.Sec.List("remote_ts"),
						mode:     it.Sec.Value("mode"),
					}
					if p := it.Sec.List("ah_proposals"); len(p) > 0 {
						chc.proposals, chc.ah = p, true
					} else {
						chc.proposals = it.Sec.List("esp_proposals")
					}
					if chc.mode == "" {
						chc.mode = "tunnel" // swanctl's default
					}
					cc.children[it.Key] = chc
					if !cc.pfsKnown && len(chc.proposals) > 0 {
						cc.pfsKnown, cc.pfsGroup = true, proposalGroup(chc.proposals[0])
					}
				}
			}
		}
		b.conns[rc.Name] = cc
	}
	for name, known := range inferPFS(b.in.SAs) {
		if cc := b.conns[name]; cc != nil && !cc.pfsKnown {
			cc.pfsKnown, cc.pfsGroup = known.known, known.group
		}
	}
}

type pfsState struct {
	known bool
	group string
}

// inferPFS tells, per connection, whether its CHILD_SAs show the rule's
// PFS group. A CHILD_SA made with its own key exchange reports the group.
// In IKEv2 only the first CHILD_SA of an IKE_SA is set up with IKE_AUTH,
// without one; every other is created (or rekeyed) with CREATE_CHILD_SA,
// which uses the group if the proposal has one. So a connection with two
// CHILD_SAs in one IKE_SA and no group has no PFS; with one CHILD_SA and
// no group it cannot be told from the SAs (and swanmgr reads its record's
// bodies, see NeedsBodies). All children of a swanmgr connection share its
// rule's proposal.
func inferPFS(sas []vici.IKESA) map[string]pfsState {
	out := map[string]pfsState{}
	for _, ike := range sas {
		st := out[ike.Name]
		if st.known && st.group != "" {
			continue
		}
		for _, ch := range ike.Children {
			if ch.DHGroup != "" {
				st = pfsState{true, groupKeyword(ch.DHGroup)}
				break
			}
		}
		if !st.known && (len(ike.Children) >= 2 || ike.Version == 1) {
			st = pfsState{known: true}
		}
		out[ike.Name] = st
	}
	return out
}

// NeedsBodies tells whether a view of these SAs needs the connections'
// settings from swanmgr's record (assign.Store.LoadBodies), which take
// longer to read than charon takes to list a thousand SAs: for rule
// filters without a CHILD_SA (the view shows their configured selectors
// and proposals), and for a connection whose SAs do not tell whether its
// rule asks for PFS (see inferPFS).
func NeedsBodies(rec *assign.Record, sas []vici.IKESA) bool {
	if rec == nil {
		return false
	}
	have := map[string]map[string]bool{}
	for _, ike := range sas {
		m := have[ike.Name]
		if m == nil {
			m = map[string]bool{}
			have[ike.Name] = m
		}
		for _, ch := range ike.Children {
			m[ch.Name] = true
		}
	}
	pfs := inferPFS(sas)
	for _, c := range rec.Conns {
		for _, ch := range c.Children {
			if !have[c.Name][ch.Name] {
				return true
			}
		}
		if len(have[c.Name]) > 0 && !pfs[c.Name].known {
			return true
		}
	}
	return false
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

// secKey is what a CHILD_SA's Security depends on, but for its SPIs.
type secKey struct {
	proto, encr, integ, dh string
	encrKS, integKS        int
	managed, pfsKnown      bool
	pfsGroup               string
}

// security describes a CHILD_SA's protection, shared between rows with
// the same; the caller copies it and adds the SPIs.
func (b *builder) security(ch *vici.ChildSA, cc *connConfig) *Security {
	k := secKey{proto: ch.Protocol, encr: ch.EncrAlg, integ: ch.IntegAlg, dh: ch.DHGroup,
		encrKS: ch.EncrKeysize, integKS: ch.IntegKeysize, managed: cc != nil}
	if cc != nil {
		k.pfsKnown, k.pfsGroup = cc.pfsKnown, cc.pfsGroup
	}
	if s, ok := b.secs[k]; ok {
		return s
	}
	s := childSecurity(vici.ChildSA{Protocol: ch.Protocol, EncrAlg: ch.EncrAlg, EncrKeysize: ch.EncrKeysize,
		IntegAlg: ch.IntegAlg, IntegKeysize: ch.IntegKeysize, DHGroup: ch.DHGroup}, k.pfsKnown, k.pfsGroup)
	if b.secs == nil {
		b.secs = map[secKey]*Security{}
	}
	b.secs[k] = s
	return s
}

// ago turns charon's "seconds since" into a time and seconds.
func (b *builder) ago(d time.Duration) (*time.Time, *int64) {
	return ptr(b.now.Add(-d)), ptr(int64(d / time.Second))
}

// until turns charon's "seconds until" into a time and seconds; charon
// leaves the value out (0 here) when nothing is scheduled. A negative
// value is overdue.
func (b *builder) until(d time.Duration) (*time.Time, *int64) {
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
		r.RekeyAt, r.RekeyInSeconds = b.until(sa.RekeyTime)
		r.ReauthAt, r.ReauthInSeconds = b.until(sa.ReauthTime)
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
