package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// record is a policy of two rules: "Web" (one filter, with peer
// 192.0.2.2) and "Mail" (one filter, with 192.0.2.3).
func record() *assign.Record {
	conn := func(name, rule, peer string, idx int) assign.RecordConn {
		body := &render.Section{}
		body.SetList("local_addrs", "192.0.2.1")
		body.SetList("remote_addrs", peer)
		ch := body.Sub("children", "").Sub(name+"-1", "")
		ch.SetList("local_ts", "dynamic[tcp]")
		ch.SetList("remote_ts", "dynamic[tcp/443]")
		ch.Set("mode", "transport")
		ch.SetList("esp_proposals", "aes256gcm16-x25519")
		return assign.RecordConn{
			Name:     name,
			Origin:   render.Origin{Policy: "P", Rule: rule, RuleIndex: idx, FilterList: rule + " list", Action: "negotiate", Peer: peer},
			Children: []render.ChildOrigin{{Name: name + "-1", FilterIndex: 0, Summary: "me → " + peer + " tcp any→443"}},
			Body:     body,
		}
	}
	return &assign.Record{Version: assign.RecordVersion, Policy: "P", Backend: "kernel",
		Conns: []assign.RecordConn{conn("sm-web", "Web", "192.0.2.2", 0), conn("sm-mail", "Mail", "192.0.2.3", 1)}}
}

// sa is an IKE_SA of sm-web with one CHILD_SA.
func sa(ikeID, childID int, bytesIn, bytesOut int) *govici.Message {
	return vicitest.Msg("sm-web", vicitest.Msg(
		"uniqueid", strconv.Itoa(ikeID), "version", "2", "state", "ESTABLISHED",
		"local-host", "192.0.2.1", "remote-host", "192.0.2.2",
		"child-sas", vicitest.Msg("sm-web-1-"+strconv.Itoa(childID), vicitest.Msg(
			"name", "sm-web-1", "uniqueid", strconv.Itoa(childID), "state", "INSTALLED", "mode", "TRANSPORT",
			"protocol", "ESP", "encr-alg", "AES_GCM_16", "encr-keysize", "256",
			"bytes-in", strconv.Itoa(bytesIn), "packets-in", "1", "bytes-out", strconv.Itoa(bytesOut), "packets-out", "1",
			"local-ts", []string{"192.0.2.1/32[tcp]"}, "remote-ts", []string{"192.0.2.2/32[tcp/443]"}))))
}

func scrape(t *testing.T, e *Exporter) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(Handler(e))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestExporter(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.Handle("get-conns", func(*vicitest.Request) *govici.Message {
		return vicitest.Msg("conns", []string{"sm-web", "sm-mail"})
	})
	rec := record()
	e := New(Options{
		Socket:  srv.Socket(),
		Records: staticRecords{rec},
		Timeout: 5 * time.Second,
	})
	defer e.Close()

	srv.SetSAs(sa(1, 1, 100, 200))
	m := scrape(t, e)
	web := `{direction="in",peer="192.0.2.2",policy="P",rule="Web"}`
	for name, want := range map[string]float64{
		"swanmgr_daemon_up":                                    1,
		`swanmgr_rule_up{policy="P",rule="Web"}`:               1,
		`swanmgr_rule_up{policy="P",rule="Mail"}`:              0,
		"swanmgr_sa_bytes_total" + web:                         100,
		`swanmgr_confidential_bytes_total{direction="out"}`:    200,
		`swanmgr_sas{peer="192.0.2.2",policy="P",rule="Web"}`:  1,
		"swanmgr_active_associations":                          1,
		`swanmgr_daemon_info{daemon="charon",version="5.9.8"}`: 1,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	for name := range m {
		if strings.Contains(name, "spi") || strings.Contains(name, "uniqueid") || strings.Contains(name, "ike_sa_id") {
			t.Errorf("unbounded label in %s", name)
		}
	}
	if _, ok := m[`swanmgr_rekeys_total{sa="ike"}`]; ok {
		t.Error("rekeys exported without the counters plugin")
	}

	// The SA is rekeyed: a new CHILD_SA starts at zero. The counter goes on.
	srv.SetSAs(sa(1, 2, 10, 20))
	m = scrape(t, e)
	if got := m["swanmgr_sa_bytes_total"+web]; got != 110 {
		t.Errorf("after a rekey bytes in = %v, want 100 + 10", got)
	}
	// charon restarts and reuses unique ids, with lower counts.
	srv.SetSAs(sa(1, 2, 5, 5))
	m = scrape(t, e)
	if got := m["swanmgr_sa_bytes_total"+web]; got != 115 {
		t.Errorf("after a restart bytes in = %v, want 110 + 5", got)
	}
	if got := m[`swanmgr_confidential_bytes_total{direction="in"}`]; got != 115 {
		t.Errorf("confidential bytes in = %v, want 115", got)
	}
}

func TestExporterDaemonDown(t *testing.T) {
	rec := record()
	e := New(Options{
		Socket:  "/nonexistent/charon.vici",
		Records: staticRecords{rec},
		Dial: func(context.Context) (status.Watchable, error) {
			return nil, errors.New("cannot reach charon at /nonexistent/charon.vici: is it running?")
		},
	})
	m := scrape(t, e)
	if m["swanmgr_daemon_up"] != 0 {
		t.Errorf("daemon_up = %v", m["swanmgr_daemon_up"])
	}
	for _, r := range []string{"Web", "Mail"} {
		if v, ok := m[`swanmgr_rule_up{policy="P",rule="`+r+`"}`]; !ok || v != 0 {
			t.Errorf("rule %s up = %v (present %v), want 0", r, v, ok)
		}
	}
	if _, ok := m["swanmgr_active_associations"]; ok {
		t.Error("active associations invented while charon is down")
	}
}

func TestExporterCountsEvents(t *testing.T) {
	srv := vicitest.NewServer(t)
	e := New(Options{Socket: srv.Socket(), Timeout: 5 * time.Second})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitSubscribed(t, srv)
	// And until the exporter has its confirmations: charon registers a
	// subscriber before the client reads the confirmation, and an event
	// in between stalls that session (govici) until the subscribe timeout,
	// longer than this test's deadline (it failed so on a loaded machine).
	for deadline := time.Now().Add(5 * time.Second); scrape(t, e)["swanmgr_events_up"] != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the exporter's subscriptions were not confirmed within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	srv.Emit("ike-updown", vicitest.Msg("up", "yes", "x", vicitest.Msg("uniqueid", "1")))
	srv.Emit("child-updown", vicitest.Msg("up", "yes", "x", vicitest.Msg("uniqueid", "1",
		"child-sas", vicitest.Msg("c-1", vicitest.Msg("name", "c", "uniqueid", "1")))))
	srv.Emit("child-rekey", vicitest.Msg("x", vicitest.Msg()))
	srv.Emit("log", vicitest.Msg("group", "ENC", "level", "1", "msg", "parsed IKE_AUTH response 1 [ N(AUTH_FAILED) ]"))
	want := map[string]float64{
		"swanmgr_ike_sas_established_total":     1,
		"swanmgr_child_sas_established_total":   1,
		"swanmgr_key_additions_total":           2,
		"swanmgr_authentication_failures_total": 1,
		"swanmgr_events_up":                     1,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := scrape(t, e)
		ok := true
		for k, v := range want {
			ok = ok && m[k] == v
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event counters: %v", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// charon restarts: the exporter subscribes again.
	srv.Disconnect()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if scrape(t, e)["swanmgr_events_reconnects_total"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no resubscription after charon dropped the connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ status.Watchable = (*vici.Client)(nil)

// staticRecords gives one record, with its bodies.
type staticRecords struct{ rec *assign.Record }

func (s staticRecords) Record() (*assign.Record, error)     { return s.rec, nil }
func (s staticRecords) WithBodies() (*assign.Record, error) { return s.rec, nil }

// waitSubscribed waits until a client is registered for every event the
// exporter watches.
func waitSubscribed(t *testing.T, srv *vicitest.Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, e := range status.WatchedEvents {
		for srv.Subscribers(e) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the exporter did not subscribe to %s within 5 s", e)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// fixedGuard is a guard reader with a fixed ruleset and drop counts.
type fixedGuard struct {
	rs    *guard.Ruleset
	drops map[string]uint64
	err   error
}

func (g fixedGuard) Guard(context.Context, *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	return g.rs, g.drops, g.err
}

// The guard's drop counts are exported per rule, also while charon is
// down; a rule whose count could not be read is left out, never 0.
func TestExporterGuardDrops(t *testing.T) {
	rec := record()
	rec.GuardHash = "h"
	rs := &guard.Ruleset{Backend: guard.Kernel, Rules: []guard.Rule{
		{Name: "Web", Counter: "r-web", Verdict: guard.Negotiate},
		{Name: "Mail", Counter: "r-mail", Verdict: guard.Block},
		{Name: "DNS", Counter: "r-dns", Verdict: guard.Pass},
	}}
	down := func(context.Context) (status.Watchable, error) {
		return nil, errors.New("cannot reach charon at /nonexistent/charon.vici: is it running?")
	}
	e := New(Options{Socket: "/nonexistent/charon.vici", Records: staticRecords{rec}, Dial: down,
		Guard: fixedGuard{rs: rs, drops: map[string]uint64{"r-web": 7, "r-mail": 0}}})
	m := scrape(t, e)
	for name, want := range map[string]float64{
		`swanmgr_guard_dropped_packets_total{action="negotiate",policy="P",rule="Web"}`: 7,
		`swanmgr_guard_dropped_packets_total{action="block",policy="P",rule="Mail"}`:    0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	for name := range m {
		if strings.Contains(name, `rule="DNS"`) {
			t.Errorf("a pass rule is exported as guarded: %s", name)
		}
	}
	e = New(Options{Socket: "/nonexistent/charon.vici", Records: staticRecords{rec}, Dial: down,
		Guard: fixedGuard{rs: rs, err: errors.New("nft: permission denied")}})
	for name := range scrape(t, e) {
		if strings.HasPrefix(name, "swanmgr_guard_dropped_packets_total") {
			t.Errorf("counters that could not be read are exported: %s", name)
		}
	}
}
