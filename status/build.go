package status

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
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

	// Guard is the nftables guard swanmgr installed for the policy (nil:
	// none); GuardDrops are its drop counts per rule counter, nil with
	// GuardErr saying why they could not be read.
	Guard      *guard.Ruleset
	GuardDrops map[string]uint64
	GuardErr   error

	// Confirmation is a change pending confirmation, Reverted the last
	// revert (nil: none).
	Confirmation *assign.Confirmation
	Reverted     *assign.Reverted

	// reuse, set by refreshQuiet, are the rows of the view before, of
	// the same SAs: Build moves their times on instead of making them
	// again.
	reuse *reused
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
	// The child's own rule when it is not the connection's (all rules
	// to one peer share its connection); nil otherwise.
	rule, filterList *string
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
			for _, r := range render.Rules(c.Origin, c.Children) {
				if !slices.Contains(p.Rules, r) {
					p.Rules = append(p.Rules, r)
				}
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
	// The guard holds while charon is down: shown either way.
	st.Guard = b.guardView()
	b.confirmations(st)
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
	if r := in.reuse; r != nil {
		st.SAs, st.IKESAs = r.sas(), r.ikes()
		return st, nil
	}
	st.SAs = b.saRows()
	markGuarded(st, in.Guard)
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
	if r := b.in.Guard; r != nil {
		// A block rule on libipsec has no connection, only guard entries.
		for _, g := range r.Guarded() {
			if strings.EqualFold(g.Name, b.f.Rule) {
				return nil
			}
		}
	}
	for _, c := range rec.Conns {
		for _, r := range render.Rules(c.Origin, c.Children) {
			if strings.EqualFold(r, b.f.Rule) {
				return nil
			}
			if !slices.Contains(rules, r) {
				rules = append(rules, r)
			}
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
			if co.Rule != "" && co.Rule != o.Rule {
				f.rule, f.filterList = ptr(co.Rule), optStr(co.FilterList)
			}
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
				for _, it := range children.All() {
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
