package metrics

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// A scrape stuck on charon's answer must not hold up the next scrape,
// nor Close.
func TestScrapesDoNotQueue(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.Handle("get-conns", func(*vicitest.Request) *govici.Message {
		return vicitest.Msg("conns", []string{"sm-web", "sm-mail"})
	})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv.Handle("list-sas", func(r *vicitest.Request) *govici.Message {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			select { // charon busy: only the end of the test frees it
			case <-release:
			case <-r.Gone():
			}
		}
		return govici.NewMessage()
	})
	defer close(release)
	e := New(Options{Socket: srv.Socket(), Records: staticRecords{record()}, Timeout: 4 * time.Second})

	slow := make(chan map[string]float64, 1)
	go func() { slow <- scrape(t, e) }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first scrape never asked list-sas")
	}
	start := time.Now()
	m := scrape(t, e)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the second scrape took %v: it waited behind the stuck one", took)
	}
	if m["swanmgr_daemon_up"] != 1 {
		t.Errorf("second scrape: daemon_up = %v", m["swanmgr_daemon_up"])
	}
	start = time.Now()
	e.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with a scrape in progress", took)
	}
	select {
	case m := <-slow:
		if m["swanmgr_daemon_up"] != 0 {
			t.Errorf("the stuck scrape: daemon_up = %v, want 0", m["swanmgr_daemon_up"])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck scrape never ended")
	}
}

// hungDaemon is a Watchable whose list-sas ignores its deadline.
type hungDaemon struct {
	status.Watchable
	release chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func (h *hungDaemon) ListSAs(context.Context, vici.SAFilter) ([]vici.IKESA, error) {
	<-h.release
	return nil, nil
}
func (h *hungDaemon) Conns(context.Context) ([]string, error) { return nil, nil }
func (h *hungDaemon) Stats(context.Context) (vici.Stats, error) {
	return vici.Stats{}, nil
}
func (h *hungDaemon) Counters(context.Context) (map[string]uint64, error) {
	return nil, vici.ErrUnsupported
}
func (h *hungDaemon) Version(context.Context) (vici.Version, error) { return vici.Version{}, nil }
func (h *hungDaemon) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

// A scrape whose question ignores its deadline ends anyway, a little
// after it, calls charon down and drops the client.
func TestScrapeDeadlineBounded(t *testing.T) {
	h := &hungDaemon{release: make(chan struct{}), closed: make(chan struct{})}
	defer close(h.release)
	e := New(Options{Socket: "/test/charon.vici", Records: staticRecords{record()}, Timeout: 200 * time.Millisecond,
		Dial: func(context.Context) (status.Watchable, error) { return h, nil }})
	done := make(chan map[string]float64, 1)
	start := time.Now()
	go func() { done <- scrape(t, e) }()
	select {
	case m := <-done:
		if took := time.Since(start); took > 200*time.Millisecond+scrapeGrace+time.Second {
			t.Errorf("scrape took %v", took)
		}
		if m["swanmgr_daemon_up"] != 0 {
			t.Errorf("daemon_up = %v, want 0", m["swanmgr_daemon_up"])
		}
		if v, ok := m[`swanmgr_rule_up{policy="P",rule="Web"}`]; !ok || v != 0 {
			t.Errorf("rule_up Web = %v (present %v)", v, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a scrape waited on a hung charon past its deadline")
	}
	select {
	case <-h.closed:
	default:
		t.Error("the hung client was not dropped")
	}
}

// emit leaves out what the view does not have instead of dereferencing
// nil.
func TestEmitMissingFigures(t *testing.T) {
	e := New(Options{Socket: "/test/charon.vici"})
	id := uint64(1)
	st := &status.Status{
		Daemon: status.DaemonInfo{Reachable: true},
		SAs:    []status.SA{{Connection: "x", Child: "x", State: "INSTALLED", HasSA: true, IKESAID: &id, ChildSAID: &id}, {HasSA: true}},
	}
	st.Statistics.IKESAs.Value = &id // half-open left out
	ch := make(chan prometheus.Metric, 100)
	e.emit(ch, st, nil, 0, 1)
	close(ch)
	names := map[string]bool{}
	for m := range ch {
		names[m.Desc().String()] = true
	}
	for _, d := range []*prometheus.Desc{descActive, descHalfOpen} {
		if names[d.String()] {
			t.Errorf("%s sent without a value", d)
		}
	}
	if !names[descIKESAs.String()] || !names[descSABytes.String()] {
		t.Errorf("present figures missing: %v", names)
	}
}

// After a charon restart get-conns is empty: a permit rule is not up.
func TestRuleUpAfterRestart(t *testing.T) {
	rec := record()
	permit := rec.Conns[1]
	permit.Name, permit.Origin.Rule, permit.Origin.Action = "sm-dns", "DNS", "permit"
	permit.Children = []render.ChildOrigin{{Name: "sm-dns-1", FilterIndex: 0}}
	rec.Conns = append(rec.Conns, permit)
	srv := vicitest.NewServer(t)
	conns := []string{"sm-web", "sm-mail", "sm-dns"}
	srv.Handle("get-conns", func(*vicitest.Request) *govici.Message { return vicitest.Msg("conns", conns) })
	e := New(Options{Socket: srv.Socket(), Records: staticRecords{rec}, Timeout: 5 * time.Second})
	defer e.Close()
	const dns = `swanmgr_rule_up{policy="P",rule="DNS"}`
	if m := scrape(t, e); m[dns] != 1 {
		t.Fatalf("loaded permit rule: %s = %v", dns, m[dns])
	}
	srv.Handle("get-conns", func(*vicitest.Request) *govici.Message { return vicitest.Msg("conns", []string{}) })
	if m := scrape(t, e); m[dns] != 0 {
		t.Errorf("charon restarted, nothing loaded: %s = %v, want 0", dns, m[dns])
	}
}

// charon's IKE counters are swanmgr_charon_ike_total; the old name
// (swanmgr_charon_counter_total, which promtool rejects) is gone.
func TestCounterMetricName(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.Handle("get-counters", func(*vicitest.Request) *govici.Message {
		return vicitest.Msg("success", "yes", "counters", vicitest.Msg("", vicitest.Msg("ike-rekey-init", "2", "invalid", "3")))
	})
	e := New(Options{Socket: srv.Socket(), Timeout: 5 * time.Second})
	defer e.Close()
	m := scrape(t, e)
	if m[`swanmgr_charon_ike_total{counter="invalid"}`] != 3 {
		t.Errorf("swanmgr_charon_ike_total: %v", m)
	}
	for k := range m {
		if len(k) >= 28 && k[:28] == "swanmgr_charon_counter_total" {
			t.Errorf("old name still exported: %s", k)
		}
	}
}

// A subscription that charon never confirms is given up, counted in
// swanmgr_events_subscriptions_abandoned_total, and made again.
func TestAbandonedSubscriptionCounted(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.EmitBeforeConfirm(status.WatchedEvents[0], vicitest.Msg("x", vicitest.Msg("uniqueid", "1")))
	e := New(Options{Socket: srv.Socket(), Timeout: 5 * time.Second,
		Dial: func(ctx context.Context) (status.Watchable, error) {
			return vici.Dial(ctx, srv.Socket(), vici.WithSubscribeTimeout(200*time.Millisecond))
		}})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m := scrape(t, e)
		if m["swanmgr_events_subscriptions_abandoned_total"] == 1 && m["swanmgr_events_up"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("abandoned = %v, events_up = %v", m["swanmgr_events_subscriptions_abandoned_total"], m["swanmgr_events_up"])
		}
	}
}
