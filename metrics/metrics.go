package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici"
)

// Options configure an Exporter.
type Options struct {
	Socket string // charon's VICI socket
	// Records give swanmgr's record for the socket; nil: no policy.
	Records status.Records
	// Timeout bounds one scrape's questions to charon (default 10 s). A
	// scrape whose questions have not ended a second after it reports
	// charon as down and leaves them behind.
	Timeout time.Duration
	// Dial connects to charon (default vici.Dial of Socket).
	Dial func(ctx context.Context) (status.Watchable, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Guard reads swanmgr's nftables guard and its drop counts (nil: not
	// exported).
	Guard status.GuardReader
}

// scrapeGrace is how long a scrape waits, past its Timeout, for questions
// that ignore their deadline before it gives up on them.
const scrapeGrace = time.Second

// Exporter collects on scrape. Create it with New.
//
// Scrapes run side by side: they share the client (a *vici.Client may be
// used from several goroutines) and no lock is held while charon is asked,
// so a scrape never waits behind a slow one and Close never waits for one.
type Exporter struct {
	o Options

	// mu guards the fields below; it is never held across a VICI call.
	mu     sync.Mutex
	client status.Watchable
	closed bool
	totals *totals
	// seq numbers scrapes as they start; applied is the newest whose SAs
	// went into totals: an older snapshot that finishes later must not
	// turn counters back (it would look like a restart of every SA).
	seq, applied uint64

	evMu   sync.Mutex
	events status.EventCounts
	// watching: Run has subscribed at least once.
	watching bool
	// abandoned counts event subscriptions charon never confirmed, whose
	// sessions Run gave up (see status.WatchEach).
	abandoned uint64
}

// New returns an Exporter; call Run to count events and Close at the end.
func New(o Options) *Exporter {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Dial == nil {
		sock := o.Socket
		o.Dial = func(ctx context.Context) (status.Watchable, error) { return vici.Dial(ctx, sock) }
	}
	return &Exporter{o: o, totals: newTotals(), events: status.EventCounts{Since: o.Now()}}
}

var _ prometheus.Collector = (*Exporter)(nil)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics. docs/status.md lists them with their sources.
var (
	descUp          = desc("swanmgr_daemon_up", "1 when charon answered this scrape over VICI, 0 when it could not be reached.")
	descInfo        = desc("swanmgr_daemon_info", "charon's name and version (value 1).", "daemon", "version")
	descStart       = desc("swanmgr_daemon_start_time_seconds", "When charon started (its stats' uptime.since, one-second resolution), as a Unix time.")
	descScrape      = desc("swanmgr_scrape_duration_seconds", "How long this scrape's questions to charon took.")
	descActive      = desc("swanmgr_active_associations", "IPSecMon's Active Associations: CHILD_SAs installed now (INSTALLED, UPDATING, REKEYING, REKEYED).")
	descIKESAs      = desc("swanmgr_ike_sas", "IKE_SAs charon has now (stats).")
	descHalfOpen    = desc("swanmgr_ike_sas_half_open", "Half-open IKE_SAs: being set up now (stats).")
	descConfBytes   = desc("swanmgr_confidential_bytes_total", "IPSecMon's Confidential Bytes: ESP traffic with encryption, summed over every SA this exporter saw (direction in = received, out = sent).", "direction")
	descAuthBytes   = desc("swanmgr_authenticated_bytes_total", "IPSecMon's Authenticated Bytes: integrity-only traffic (AH, ESP with NULL or AES-GMAC), summed over every SA this exporter saw.", "direction")
	descSABytes     = desc("swanmgr_sa_bytes_total", "Bytes of the CHILD_SAs of a rule with a peer (for connections swanmgr did not load: policy empty, rule = connection name), summed over every SA this exporter saw.", "policy", "rule", "peer", "direction")
	descSAPackets   = desc("swanmgr_sa_packets_total", "Packets of the CHILD_SAs of a rule with a peer, as swanmgr_sa_bytes_total.", "policy", "rule", "peer", "direction")
	descSAs         = desc("swanmgr_sas", "CHILD_SAs installed now per rule and peer.", "policy", "rule", "peer")
	descRuleUp      = desc("swanmgr_rule_up", "1 when every filter of a rule of the assigned policy has an installed CHILD_SA (permit, block and the default response rule: when charon has the connection), else 0.", "policy", "rule")
	descRekeys      = desc("swanmgr_rekeys_total", "Rekeyings since charon started (counters plugin; absent without it).", "sa")
	descCounters    = desc("swanmgr_charon_ike_total", "charon's IKE counters since it started (counters plugin; absent without it), by charon's counter name. Was swanmgr_charon_counter_total.", "counter")
	descMainModes   = desc("swanmgr_ike_sas_established_total", "IPSecMon's Main Modes: IKE_SAs established, counted by this exporter from charon's ike-updown events since it started.")
	descQuickModes  = desc("swanmgr_child_sas_established_total", "IPSecMon's Quick Modes: CHILD_SAs established (rekeys not included), counted by this exporter from child-updown events since it started.")
	descKeyAdds     = desc("swanmgr_key_additions_total", "IPSecMon's Key Additions: CHILD_SA keys installed (new and rekeyed), counted by this exporter from child-updown and child-rekey events since it started.")
	descAuthFail    = desc("swanmgr_authentication_failures_total", "IPSecMon's Authentication Failures: IKE messages with an AUTHENTICATION_FAILED notify, sent or received, counted by this exporter from charon's log events since it started.")
	descEventsUp    = desc("swanmgr_events_up", "1 while this exporter is subscribed to charon's events (the *_established_total, key additions and authentication failures counters count only then).")
	descReconnected = desc("swanmgr_events_reconnects_total", "Times the exporter subscribed to charon's events again (charon restarted): events in between were not counted.")
	descAbandoned   = desc("swanmgr_events_subscriptions_abandoned_total", "Event subscriptions charon did not confirm in time (an event crossed the registration): the exporter closed their sessions and subscribed again.")
	descConfirm     = desc("swanmgr_confirmation_pending", "1 while a change made with --confirm waits for swanmgr confirm, else 0.")
	descConfirmBy   = desc("swanmgr_confirmation_deadline_timestamp_seconds", "When the change pending confirmation reverts unless confirmed, as a Unix time (absent when none is pending).")
	descReverted    = desc("swanmgr_last_revert_timestamp_seconds", "When swanmgr last reverted a change that was not confirmed (or on swanmgr revert), as a Unix time (absent when none was).")
	descGuardDrops  = desc("swanmgr_guard_dropped_packets_total", "Clear-text packets swanmgr's nftables guard dropped for a rule (negotiate: no SA protected them; block: all), since the rule's guard entries were installed; exported also while charon is down.", "policy", "rule", "action")
)

var allDescs = []*prometheus.Desc{descUp, descInfo, descStart, descScrape, descActive, descIKESAs, descHalfOpen,
	descConfBytes, descAuthBytes, descSABytes, descSAPackets, descSAs, descRuleUp, descRekeys, descCounters,
	descMainModes, descQuickModes, descKeyAdds, descAuthFail, descEventsUp, descReconnected, descAbandoned, descGuardDrops, descConfirm, descConfirmBy, descReverted}

// Describe sends every metric the Exporter may export.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect asks charon and sends the metrics of what it answered.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), e.o.Timeout)
	defer cancel()
	start := time.Now()
	in, seq := e.collectBounded(ctx)
	took := time.Since(start)
	in.Socket = e.o.Socket
	st, err := status.Build(in, status.Filter{})
	if err != nil {
		// The record could not be read: charon's figures alone would call
		// every rule down or unmanaged.
		ch <- prometheus.NewInvalidMetric(descUp, err)
		return
	}
	e.emit(ch, st, in.Record, took, seq)
}

// emit sends the metrics of a view. seq is the scrape's number (see
// Exporter.applied).
func (e *Exporter) emit(ch chan<- prometheus.Metric, st *status.Status, rec *assign.Record, took time.Duration, seq uint64) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descScrape, took.Seconds())
	e.eventMetrics(gauge, counter)
	if c := st.Confirmation; c != nil {
		gauge(descConfirm, 1)
		gauge(descConfirmBy, float64(c.Deadline.Unix()))
	} else {
		gauge(descConfirm, 0)
	}
	if r := st.LastRevert; r != nil {
		gauge(descReverted, float64(r.At.Unix()))
	}
	if g := st.Guard; g != nil && st.Policy != nil {
		for _, r := range g.Rules {
			if r.DroppedPackets != nil {
				counter(descGuardDrops, float64(*r.DroppedPackets), st.Policy.Name, r.Rule, r.Action)
			}
		}
	}
	if !st.Daemon.Reachable {
		gauge(descUp, 0)
		for _, r := range ruleStates(st, rec) {
			gauge(descRuleUp, 0, r.policy, r.rule)
		}
		return
	}
	gauge(descUp, 1)
	if d := st.Daemon; d.Name != nil && d.Version != nil {
		gauge(descInfo, 1, *d.Name, *d.Version)
	}
	if st.Daemon.StartedAt != nil {
		gauge(descStart, float64(st.Daemon.StartedAt.Unix()))
	}
	// A figure the view does not have is left out, never read as 0.
	s := st.Statistics
	for _, f := range []struct {
		d *prometheus.Desc
		v *uint64
	}{{descActive, s.ActiveAssociations.Value}, {descIKESAs, s.IKESAs.Value}, {descHalfOpen, s.HalfOpenIKESAs.Value}} {
		if f.v != nil {
			gauge(f.d, float64(*f.v))
		}
	}
	if c := st.Counters; c != nil {
		counter(descRekeys, float64(c["ike-rekey-init"]+c["ike-rekey-resp"]), "ike")
		counter(descRekeys, float64(c["child-rekey"]), "child")
		names := make([]string, 0, len(c))
		for n := range c {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			counter(descCounters, float64(c[n]), n)
		}
	}

	// Per rule and peer, and by kind of protection, from every SA.
	active := map[saLabels]int{}
	var seen []observation
	for _, r := range st.SAs {
		if !r.HasSA || r.IKESAID == nil || r.ChildSAID == nil {
			continue
		}
		l := labelsOf(r)
		if isActive(r.State) {
			active[l]++
		}
		o := observation{id: saID{ike: *r.IKESAID, child: *r.ChildSAID}, labels: l,
			v: values{val(r.BytesIn), val(r.BytesOut), val(r.PacketsIn), val(r.PacketsOut)}}
		o.confidential = r.Security != nil && r.Security.Confidential != nil && *r.Security.Confidential
		seen = append(seen, o)
	}
	e.mu.Lock()
	if seq > e.applied {
		e.applied = seq
		e.totals.apply(seen)
	}
	perSA, byKind := e.totals.sums()
	e.mu.Unlock()
	for _, l := range sortedLabels(perSA) {
		v := perSA[l]
		counter(descSABytes, float64(v.bytesIn), l.policy, l.rule, l.peer, "in")
		counter(descSABytes, float64(v.bytesOut), l.policy, l.rule, l.peer, "out")
		counter(descSAPackets, float64(v.packetsIn), l.policy, l.rule, l.peer, "in")
		counter(descSAPackets, float64(v.packetsOut), l.policy, l.rule, l.peer, "out")
		gauge(descSAs, float64(active[l]), l.policy, l.rule, l.peer)
	}
	conf, auth := byKind[true], byKind[false]
	counter(descConfBytes, float64(conf.bytesIn), "in")
	counter(descConfBytes, float64(conf.bytesOut), "out")
	counter(descAuthBytes, float64(auth.bytesIn), "in")
	counter(descAuthBytes, float64(auth.bytesOut), "out")

	for _, r := range ruleStates(st, rec) {
		v := 0.0
		if r.up {
			v = 1
		}
		gauge(descRuleUp, v, r.policy, r.rule)
	}
}

// val is *p, 0 for nil (a counter charon left out).
func val(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// collectBounded is collect, given up a little after ctx's deadline if it
// has not returned by then (a question that ignores its deadline): the
// scrape then reports charon as down and drops the client it was using.
func (e *Exporter) collectBounded(ctx context.Context) (status.Input, uint64) {
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	type result struct {
		in     status.Input
		client status.Watchable
	}
	done := make(chan result, 1)
	var mu sync.Mutex
	var using status.Watchable
	go func() {
		in := e.collect(ctx, func(c status.Watchable) {
			mu.Lock()
			using = c
			mu.Unlock()
		})
		done <- result{in: in}
	}()
	deadline, _ := ctx.Deadline()
	t := time.NewTimer(time.Until(deadline) + scrapeGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.in, seq
	case <-t.C:
	}
	mu.Lock()
	c := using
	mu.Unlock()
	if c != nil {
		e.drop(c)
	}
	in := status.Input{Time: e.o.Now(), DaemonErr: fmt.Errorf("charon at %s did not answer within %s", e.o.Socket, e.o.Timeout)}
	if e.o.Records != nil {
		in.Record, in.RecordErr = e.o.Records.Record()
	}
	return in, seq
}

// collect asks charon, dialing first if there is no client yet; using is
// told the client it asks.
func (e *Exporter) collect(ctx context.Context, using func(status.Watchable)) status.Input {
	c, err := e.clientFor(ctx)
	if err != nil {
		// The guard's drops are exported while charon is down too.
		return status.Unreachable(ctx, e.o.Records, status.CollectOptions{Now: e.o.Now, Guard: e.o.Guard}, err)
	}
	using(c)
	in := status.Collect(ctx, c, e.o.Records, status.CollectOptions{Now: e.o.Now, Guard: e.o.Guard})
	if in.DaemonErr != nil && errors.Is(in.DaemonErr, vici.ErrClosed) {
		e.drop(c)
	}
	return in
}

// clientFor returns the scrape client, dialing one (without holding mu)
// if there is none.
func (e *Exporter) clientFor(ctx context.Context) (status.Watchable, error) {
	e.mu.Lock()
	c, closed := e.client, e.closed
	e.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("metrics: %w", vici.ErrClosed)
	}
	if c != nil {
		return c, nil
	}
	c, err := e.o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		c.Close()
		return nil, fmt.Errorf("metrics: %w", vici.ErrClosed)
	case e.client != nil: // another scrape dialed meanwhile
		c.Close()
		return e.client, nil
	}
	e.client = c
	return c, nil
}

// drop closes c and forgets it as the scrape client (if it still is).
func (e *Exporter) drop(c status.Watchable) {
	e.mu.Lock()
	if e.client == c {
		e.client = nil
	}
	e.mu.Unlock()
	c.Close()
}

func (e *Exporter) eventMetrics(gauge, counter func(*prometheus.Desc, float64, ...string)) {
	e.evMu.Lock()
	ev, watching, abandoned := e.events, e.watching, e.abandoned
	e.evMu.Unlock()
	up := 0.0
	if watching {
		up = 1
	}
	gauge(descEventsUp, up)
	counter(descReconnected, float64(ev.Reconnects))
	counter(descAbandoned, float64(abandoned))
	counter(descMainModes, float64(ev.IKEUp))
	counter(descQuickModes, float64(ev.ChildUp))
	counter(descKeyAdds, float64(ev.ChildUp+ev.ChildRekeys))
	counter(descAuthFail, float64(ev.AuthFailures))
}

// Run counts charon's events until ctx ends, subscribing again (with a
// growing pause) whenever charon goes away.
func (e *Exporter) Run(ctx context.Context) {
	var client status.Watchable
	defer func() {
		if client != nil {
			client.Close()
		}
	}()
	backoff := time.Duration(0)
	subscribed := false
	for ctx.Err() == nil {
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
		if client == nil {
			dctx, cancel := context.WithTimeout(ctx, e.o.Timeout)
			c, err := e.o.Dial(dctx)
			cancel()
			if err != nil {
				continue
			}
			client = c
		}
		ch, err := status.WatchEach(ctx, client, status.WatchedEvents...)
		if err != nil {
			hung := errors.Is(err, status.ErrSubscribeHung)
			if hung {
				e.evMu.Lock()
				e.abandoned++
				e.evMu.Unlock()
			}
			if hung || errors.Is(err, vici.ErrClosed) {
				client.Close()
				client = nil
			}
			continue
		}
		backoff = 0
		e.evMu.Lock()
		if subscribed {
			e.events.Reconnects++
		}
		subscribed, e.watching = true, true
		e.evMu.Unlock()
		for ev := range ch {
			e.evMu.Lock()
			e.events.Count(ev)
			e.evMu.Unlock()
		}
		e.evMu.Lock()
		e.watching = false
		e.evMu.Unlock()
	}
}

// Close closes the scrape session; it does not wait for a scrape in
// progress (whose questions then fail). Later scrapes report charon down.
func (e *Exporter) Close() {
	e.mu.Lock()
	c := e.client
	e.client, e.closed = nil, true
	e.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Handler serves the Exporter's metrics in Prometheus' formats.
func Handler(e *Exporter) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func isActive(state string) bool {
	switch state {
	case "INSTALLED", "UPDATING", "REKEYING", "REKEYED":
		return true
	}
	return false
}

// saLabels are the bounded labels of an SA's counters.
type saLabels struct{ policy, rule, peer string }

func labelsOf(r status.SA) saLabels {
	var l saLabels
	if r.Peer != nil {
		l.peer = *r.Peer
	}
	if r.Managed && r.Rule != nil {
		l.rule = *r.Rule
		if r.Policy != nil {
			l.policy = *r.Policy
		}
	} else {
		l.rule = r.Connection
	}
	return l
}

func sortedLabels(m map[saLabels]values) []saLabels {
	out := make([]saLabels, 0, len(m))
	for l := range m {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.policy != b.policy {
			return a.policy < b.policy
		}
		if a.rule != b.rule {
			return a.rule < b.rule
		}
		return a.peer < b.peer
	})
	return out
}

// ruleState is whether a rule of the assigned policy is up.
type ruleState struct {
	policy, rule string
	up           bool
}

// ruleStates tells, for every rule of the record, whether each of its
// filters (children) has an installed CHILD_SA; permit, block and default
// response rules are up when charon has their connection.
func ruleStates(st *status.Status, rec *assign.Record) []ruleState {
	if rec == nil {
		return nil
	}
	var out []ruleState
	idx := map[string]int{}
	for _, c := range rec.Conns {
		if _, ok := idx[c.Origin.Rule]; !ok {
			idx[c.Origin.Rule] = len(out)
			out = append(out, ruleState{policy: c.Origin.Policy, rule: c.Origin.Rule, up: st.Daemon.Reachable})
		}
	}
	if !st.Daemon.Reachable {
		return out
	}
	type key struct{ conn, child string }
	good := map[key]bool{}
	for _, r := range st.SAs {
		if !r.Managed {
			continue
		}
		k := key{r.Connection, r.Child}
		switch {
		case r.HasSA && isActive(r.State):
			good[k] = true
		case r.State == status.StatePermit || r.State == status.StateBlock:
			good[k] = true
		case r.State == status.StateNotEstablished && r.Filter == nil && r.Action != nil && *r.Action == "negotiate":
			// The default response rule only answers: loaded is up.
			good[k] = true
		}
	}
	for _, c := range rec.Conns {
		for _, ch := range c.Children {
			if !good[key{c.Name, ch.Name}] {
				out[idx[c.Origin.Rule]].up = false
			}
		}
	}
	return out
}
