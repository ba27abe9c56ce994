package status

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// totalsGuard is a guard whose totals and drop count the test sets; it
// counts its full reads.
type totalsGuard struct {
	mu     sync.Mutex
	totals Totals
	err    error
	drops  uint64
	reads  int
}

var quietGuard = &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel,
	Rules: []guard.Rule{{Name: "R", Counter: "r-r", Verdict: guard.Negotiate}}}

func (g *totalsGuard) Guard(ctx context.Context, rec *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads++
	return quietGuard, map[string]uint64{"r-r": g.drops}, nil
}

func (g *totalsGuard) Totals(ctx context.Context) (Totals, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.totals, g.err
}

func (g *totalsGuard) update(fn func(g *totalsGuard)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn(g)
}

func (g *totalsGuard) fullReads() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reads
}

// saBytes is oneSA with bytes-in n, established 100 s ago, its CHILD_SA
// installed 50 s ago and rekeyed in rekey seconds.
func saBytes(n, rekey string) *govici.Message {
	return vicitest.Msg("peer", vicitest.Msg(
		"uniqueid", "1", "version", "2", "state", "ESTABLISHED",
		"local-host", "192.0.2.1", "remote-host", "192.0.2.2", "established", "100",
		"child-sas", vicitest.Msg("net-1", vicitest.Msg(
			"name", "net", "uniqueid", "1", "state", "INSTALLED", "mode", "TUNNEL", "protocol", "ESP",
			"encr-alg", "AES_GCM_16", "encr-keysize", "256", "bytes-in", n, "bytes-out", "20",
			"install-time", "50", "rekey-time", rekey,
			"local-ts", []string{"10.1.0.0/16"}, "remote-ts", []string{"10.2.0.0/16"}))))
}

// clock is a watch's clock that a test moves on.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

func quietWatch(t *testing.T, g GuardReader, c *clock) (*vicitest.Server, *watchRun) {
	t.Helper()
	srv := vicitest.NewServer(t)
	srv.SetSAs(saBytes("10", "3000"))
	recs := &swappedRecords{}
	recs.rec.Store(&assign.Record{Socket: srv.Socket(), Policy: "P", GuardHash: "h", AppliedAt: time.Now()})
	r := startWatch(t, WatchOptions{
		Socket:   srv.Socket(),
		Interval: 20 * time.Millisecond,
		Timeout:  5 * time.Second,
		Records:  recs,
		Guard:    g,
		Now:      c.now,
		Dial:     func(ctx context.Context) (Watchable, error) { return vici.Dial(ctx, srv.Socket()) },
	})
	return srv, r
}

func bytesIn(st *Status) uint64 {
	if len(st.SAs) != 1 || st.SAs[0].BytesIn == nil {
		return 0
	}
	return *st.SAs[0].BytesIn
}

func dropped(st *Status) uint64 {
	if st.Guard == nil || len(st.Guard.Rules) != 1 || st.Guard.Rules[0].DroppedPackets == nil {
		return 0
	}
	return *st.Guard.Rules[0].DroppedPackets
}

// While the guard saw no IPsec traffic, a tick shows the last view again
// brought to the present, without asking charon for its SAs (at 1,000
// CHILD_SAs that listing was most of a watch's CPU, and charon's), and
// reads the drop counts again only when the guard dropped something. As
// soon as IPsec's traffic moves, the next tick lists everything again:
// new byte counts show. Every tick used to list every SA.
func TestWatchQuietWithoutTraffic(t *testing.T) {
	g := &totalsGuard{}
	c := &clock{}
	srv, r := quietWatch(t, g, c)
	first := r.next(t, 5*time.Second, func(st *Status) bool { return len(st.SAs) == 1 })
	listed := srv.Count("list-sas")
	var last *Status
	for range 5 {
		c.advance(2 * time.Second)
		last = r.next(t, 5*time.Second, func(*Status) bool { return true })
	}
	if n := srv.Count("list-sas"); n != listed {
		t.Errorf("list-sas asked %d times more without traffic", n-listed)
	}
	if n := g.fullReads(); n != 1 {
		t.Errorf("the drop counts read %d times without a drop", n)
	}
	// Brought to the present: the same moment of installation, a rekey
	// ten seconds nearer.
	sa0, sa := first.SAs[0], last.SAs[0]
	if !sa.EstablishedAt.Equal(*sa0.EstablishedAt) || *sa.EstablishedSeconds < *sa0.EstablishedSeconds+10 {
		t.Errorf("installed at %v (%d s ago), first view %v (%d s ago)", sa.EstablishedAt, *sa.EstablishedSeconds, sa0.EstablishedAt, *sa0.EstablishedSeconds)
	}
	if sa.RekeyInSeconds == nil || *sa.RekeyInSeconds > *sa0.RekeyInSeconds-10 {
		t.Errorf("rekey in %v s, first view %d s", deref(sa.RekeyInSeconds), *sa0.RekeyInSeconds)
	}
	if !sa.RekeyAt.Equal(*sa0.RekeyAt) {
		t.Errorf("rekey at %v, first view %v", sa.RekeyAt, sa0.RekeyAt)
	}

	// Something dropped: the counts are read again, the SAs still not.
	g.update(func(g *totalsGuard) { g.drops, g.totals.Dropped = 7, 7 })
	r.next(t, 5*time.Second, func(st *Status) bool { return dropped(st) == 7 })
	if n := srv.Count("list-sas"); n != listed {
		t.Errorf("list-sas asked after a drop")
	}

	// Traffic: the next tick lists, and shows what charon counted.
	srv.SetSAs(saBytes("5000", "3000"))
	g.update(func(g *totalsGuard) { g.totals.Traffic = 3 })
	r.next(t, 5*time.Second, func(st *Status) bool { return bytesIn(st) == 5000 })
	if srv.Count("list-sas") == listed {
		t.Error("new bytes shown without a listing")
	}
}

// Whatever the totals say, a timer that runs out (a rekey is due), a
// listing older than quietMax or totals that cannot be read make the
// tick list everything again; a guard without totals lists every tick.
func TestWatchQuietHasLimits(t *testing.T) {
	t.Run("rekey due", func(t *testing.T) {
		g := &totalsGuard{}
		c := &clock{}
		srv, r := quietWatch(t, g, c)
		r.next(t, 5*time.Second, func(st *Status) bool { return len(st.SAs) == 1 })
		listed := srv.Count("list-sas")
		srv.SetSAs(saBytes("42", "3000"))
		c.advance(3001 * time.Second)
		r.next(t, 5*time.Second, func(st *Status) bool { return bytesIn(st) == 42 })
		if srv.Count("list-sas") == listed {
			t.Error("not listed")
		}
	})
	t.Run("quietMax", func(t *testing.T) {
		g := &totalsGuard{}
		c := &clock{}
		srv, r := quietWatch(t, g, c)
		r.next(t, 5*time.Second, func(st *Status) bool { return len(st.SAs) == 1 })
		g.update(func(g *totalsGuard) { g.drops = 9 }) // a reset by hand: the total did not move
		srv.SetSAs(saBytes("43", "3000"))
		c.advance(quietMax)
		st := r.next(t, 5*time.Second, func(st *Status) bool { return bytesIn(st) == 43 })
		if dropped(st) != 9 {
			t.Errorf("drop counts not read again after quietMax: %d", dropped(st))
		}
	})
	t.Run("totals fail", func(t *testing.T) {
		g := &totalsGuard{err: errors.New("no totals in the table")}
		c := &clock{}
		srv, r := quietWatch(t, g, c)
		r.next(t, 5*time.Second, func(st *Status) bool { return len(st.SAs) == 1 })
		srv.SetSAs(saBytes("44", "3000"))
		r.next(t, 5*time.Second, func(st *Status) bool { return bytesIn(st) == 44 })
		if g.fullReads() < 2 {
			t.Errorf("drop counts read %d times", g.fullReads())
		}
	})
	t.Run("no totals", func(t *testing.T) {
		g := &totalsGuard{}
		c := &clock{}
		srv, r := quietWatch(t, plainGuard{g}, c)
		r.next(t, 5*time.Second, func(st *Status) bool { return len(st.SAs) == 1 })
		srv.SetSAs(saBytes("45", "3000"))
		r.next(t, 5*time.Second, func(st *Status) bool { return bytesIn(st) == 45 })
	})
}

// plainGuard hides a guard's totals.
type plainGuard struct{ g GuardReader }

func (p plainGuard) Guard(ctx context.Context, rec *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	return p.g.Guard(ctx, rec)
}

func TestAged(t *testing.T) {
	sas := []vici.IKESA{{State: "ESTABLISHED", Established: 100 * time.Second, RekeyTime: 50 * time.Second,
		Children: []vici.ChildSA{{State: "INSTALLED", InstallTime: 10 * time.Second, UseIn: 3 * time.Second,
			RekeyTime: 20 * time.Second, LifeTime: 30 * time.Second, BytesIn: 9}}}}
	got, ok := aged(sas, 5*time.Second)
	if !ok {
		t.Fatal("not aged")
	}
	sa, ch := got[0], got[0].Children[0]
	if sa.Established != 105*time.Second || sa.RekeyTime != 45*time.Second || sa.ReauthTime != 0 ||
		ch.InstallTime != 15*time.Second || ch.UseIn != 8*time.Second || ch.UseOut != 0 ||
		ch.RekeyTime != 15*time.Second || ch.LifeTime != 25*time.Second || ch.BytesIn != 9 {
		t.Errorf("aged: %+v", got)
	}
	if sas[0].Established != 100*time.Second || sas[0].Children[0].InstallTime != 10*time.Second {
		t.Error("the SAs aged in place")
	}
	if _, ok := aged(sas, 20*time.Second); ok {
		t.Error("a CHILD_SA's rekey passed unnoticed")
	}
	for _, state := range []string{"REKEYING", "CONNECTING", "DELETING"} {
		s := []vici.IKESA{{State: state}}
		if _, ok := aged(s, time.Second); ok {
			t.Errorf("an IKE_SA %s aged", state)
		}
	}
	for _, state := range []string{"REKEYED", "INSTALLING", "DELETING"} {
		s := []vici.IKESA{{State: "ESTABLISHED", Children: []vici.ChildSA{{State: state}}}}
		if _, ok := aged(s, time.Second); ok {
			t.Errorf("a CHILD_SA %s aged", state)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// The rows of a view moved on by d are what Build makes of its SAs aged
// by d, in every golden case whose SAs can be aged: the quiet refresh's
// shortcut changes nothing a view shows.
func TestReusedRowsAsBuilt(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.case.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	compared := 0
	for _, path := range cases {
		c := loadCase(t, path)
		if c.Unreachable != "" {
			continue
		}
		in, _ := caseInput(t, c)
		st, err := Build(in, c.Filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Duration{time.Second, 7 * time.Second, 61 * time.Second} {
			sas, ok := aged(in.SAs, d)
			if !ok {
				continue
			}
			later := in
			later.SAs, later.Time = sas, in.Time.Add(d)
			want, err := Build(later, c.Filter)
			if err != nil {
				t.Fatal(err)
			}
			later.reuse = &reused{st: st, d: d}
			got, err := Build(later, c.Filter)
			if err != nil {
				t.Fatal(err)
			}
			var gb, wb bytes.Buffer
			if err := WriteJSON(&gb, got, false); err != nil {
				t.Fatal(err)
			}
			WriteJSON(&wb, want, false)
			if gb.String() != wb.String() {
				t.Errorf("%s, %v later: reused rows differ from built ones:\n%s\nwant\n%s", path, d, gb.String(), wb.String())
			}
			compared++
		}
	}
	if compared < 6 {
		t.Errorf("only %d views compared", compared)
	}
}

// age and TrafficText, written without fmt for --watch at thousands of
// SAs, say what fmt said.
func TestAgeAndTrafficAsFormatted(t *testing.T) {
	ref := func(sec int64) string {
		neg := sec < 0
		if neg {
			sec = -sec
		}
		var s string
		switch {
		case sec < 60:
			s = fmt.Sprintf("%ds", sec)
		case sec < 3600:
			s = fmt.Sprintf("%dm%ds", sec/60, sec%60)
		case sec < 86400:
			s = fmt.Sprintf("%dh%dm", sec/3600, sec%3600/60)
		default:
			s = fmt.Sprintf("%dd%dh", sec/86400, sec%86400/3600)
		}
		if neg {
			return "-" + s
		}
		return s
	}
	for _, sec := range []int64{0, 1, 59, 60, 61, 3599, 3600, 3661, 86399, 86400, 90061, 1 << 40, -1, -61, -3600, -90061} {
		if got, want := age(sec), ref(sec); got != want {
			t.Errorf("age(%d) = %q, want %q", sec, got, want)
		}
	}
	for _, v := range []uint64{0, 7, 1 << 63} {
		r := SA{BytesIn: &v, BytesOut: ptr(v + 1), PacketsIn: ptr(v / 3), PacketsOut: ptr(uint64(42))}
		want := fmt.Sprintf("in %d B, %d packets · out %d B, %d packets", *r.BytesIn, *r.PacketsIn, *r.BytesOut, *r.PacketsOut)
		if got := TrafficText(r); got != want {
			t.Errorf("TrafficText = %q, want %q", got, want)
		}
	}
	if TrafficText(SA{}) != "" {
		t.Error("traffic of a row without counts")
	}
}
