package status

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// saOf is an IKE_SA of connection name and unique id uid with one
// CHILD_SA per child unique id.
func saOf(name, uid string, children ...string) *govici.Message {
	kids := govici.NewMessage()
	for _, c := range children {
		kids.Set(name+"-"+c, vicitest.Msg("name", name, "uniqueid", c, "state", "INSTALLED", "mode", "TUNNEL", "protocol", "ESP",
			"encr-alg", "AES_GCM_16", "encr-keysize", "256", "bytes-in", "10", "bytes-out", "20",
			"local-ts", []string{"10.1.0.0/16"}, "remote-ts", []string{"10.2.0.0/16"}))
	}
	return vicitest.Msg(name, vicitest.Msg(
		"uniqueid", uid, "version", "2", "state", "ESTABLISHED",
		"local-host", "192.0.2.1", "remote-host", "192.0.2.2", "established", "1", "child-sas", kids))
}

// listings returns the ike-id of each list-sas charon was sent from the
// n-th command on ("" for a whole listing).
func listings(srv *vicitest.Server, n int) []string {
	var out []string
	for _, r := range srv.Received()[n:] {
		if r.Command == "list-sas" {
			id, _ := r.Message.Get("ike-id").(string)
			out = append(out, id)
		}
	}
	return out
}

func childCount(st *Status) int { return len(st.SAs) }

// An SA event costs what its IKE_SA costs: the watcher asks charon for
// that IKE_SA alone (list-sas with ike-id), not for every SA, and the
// view still shows the change within 100 ms of the event. An ike-rekey,
// whose new IKE_SA the event does not name, asks for everything; an
// authentication failure asks for nothing.
func TestWatchEventListsItsIKESAOnly(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.SetSAs(saOf("peer-a", "1", "11"), saOf("peer-b", "2", "21"))
	r := startWatch(t, WatchOptions{
		Socket:   srv.Socket(),
		Interval: time.Hour, // only events can refresh
		Timeout:  5 * time.Second,
		Dial:     func(ctx context.Context) (Watchable, error) { return vici.Dial(ctx, srv.Socket()) },
	})
	r.next(t, 5*time.Second, func(st *Status) bool { return len(st.IKESAs) == 2 && childCount(st) == 2 })
	waitSubscribers(t, srv, "child-updown")

	steps := []struct {
		name  string
		sas   []*govici.Message
		event string
		msg   *govici.Message
		want  func(*Status) bool
		lists []string
	}{
		{"a second CHILD_SA comes up in IKE_SA 2",
			[]*govici.Message{saOf("peer-a", "1", "11"), saOf("peer-b", "2", "21", "22")},
			"child-updown", vicitest.Msg("up", "yes", "peer-b", vicitest.Msg("uniqueid", "2", "child-sas",
				vicitest.Msg("peer-b-22", vicitest.Msg("name", "peer-b", "uniqueid", "22")))),
			func(st *Status) bool { return len(st.IKESAs) == 2 && childCount(st) == 3 }, []string{"2"}},
		{"IKE_SA 1 goes down",
			[]*govici.Message{saOf("peer-b", "2", "21", "22")},
			"ike-updown", vicitest.Msg("peer-a", vicitest.Msg("uniqueid", "1")),
			func(st *Status) bool { return len(st.IKESAs) == 1 && childCount(st) == 2 }, []string{"1"}},
		{"a new IKE_SA 3 comes up",
			[]*govici.Message{saOf("peer-b", "2", "21", "22"), saOf("peer-a", "3", "31")},
			"ike-updown", vicitest.Msg("up", "yes", "peer-a", vicitest.Msg("uniqueid", "3")),
			func(st *Status) bool { return len(st.IKESAs) == 2 && childCount(st) == 3 }, []string{"3"}},
		{"IKE_SA 2 is rekeyed into 4",
			[]*govici.Message{saOf("peer-b", "4", "21", "22"), saOf("peer-a", "3", "31")},
			"ike-rekey", vicitest.Msg("peer-b", vicitest.Msg("uniqueid", "2", "new", vicitest.Msg("uniqueid", "4"))),
			func(st *Status) bool {
				return len(st.IKESAs) == 2 && childCount(st) == 3 && st.Statistics.Rekeys.Value != nil && *st.Statistics.Rekeys.Value >= 1
			}, []string{""}},
	}
	for _, s := range steps {
		srv.SetSAs(s.sas...)
		n := len(srv.Received())
		start := time.Now()
		srv.Emit(s.event, s.msg)
		r.next(t, time.Second, s.want)
		took := time.Since(start)
		if took > 100*time.Millisecond {
			t.Errorf("%s: the view showed it %v after the event, want within 100 ms", s.name, took)
		}
		if got := listings(srv, n); len(got) != len(s.lists) || (len(got) > 0 && got[0] != s.lists[0]) {
			t.Errorf("%s: list-sas sent with ike-id %q, want %q (\"\" is a whole listing)", s.name, got, s.lists)
		}
	}
}

func TestRelistIDs(t *testing.T) {
	ev := func(name string, m *govici.Message) vici.Event { return vici.Event{Name: name, Message: m} }
	up := func(uid string) vici.Event {
		return ev("child-updown", vicitest.Msg("up", "yes", "p", vicitest.Msg("uniqueid", uid)))
	}
	for _, tc := range []struct {
		name string
		evs  []vici.Event
		ids  []uint64
		ok   bool
	}{
		{"one event", []vici.Event{up("7")}, []uint64{7}, true},
		{"a burst names each IKE_SA once, in order", []vici.Event{up("7"), up("3"), up("7")}, []uint64{7, 3}, true},
		{"a log line names none", []vici.Event{ev("log", vicitest.Msg("group", "ENC", "msg", "x"))}, nil, true},
		{"ike-rekey lists everything", []vici.Event{up("7"), ev("ike-rekey", vicitest.Msg("p", vicitest.Msg("uniqueid", "7")))}, nil, false},
		{"an IKE_SA without an id lists everything", []vici.Event{ev("ike-updown", vicitest.Msg("p", vicitest.Msg("state", "DELETING")))}, nil, false},
		{"an event naming no IKE_SA lists everything", []vici.Event{ev("child-rekey", govici.NewMessage())}, nil, false},
		{"more IKE_SAs than maxRelisted list everything", func() []vici.Event {
			var evs []vici.Event
			for i := 1; i <= maxRelisted+1; i++ {
				evs = append(evs, up(string(rune('0'+i%10))+"0"))
			}
			return evs
		}(), nil, false},
	} {
		ids, ok := relistIDs(tc.evs)
		if ok != tc.ok || (ok && !slices.Equal(ids, tc.ids)) {
			t.Errorf("%s: got %v, %v; want %v, %v", tc.name, ids, ok, tc.ids, tc.ok)
		}
	}
}

func TestReplaceSAs(t *testing.T) {
	sa := func(id uint64, name string) vici.IKESA { return vici.IKESA{UniqueID: id, Name: name} }
	names := func(sas []vici.IKESA) string {
		s := ""
		for _, x := range sas {
			s += x.Name
		}
		return s
	}
	base := []vici.IKESA{sa(1, "a"), sa(2, "b"), sa(3, "c")}
	for _, tc := range []struct {
		id   uint64
		now  []vici.IKESA
		want string
	}{
		{2, []vici.IKESA{sa(2, "B")}, "aBc"},
		{2, nil, "ac"},
		{9, []vici.IKESA{sa(9, "z")}, "abcz"},
		{9, nil, "abc"},
	} {
		if got := names(replaceSAs(base, tc.id, tc.now)); got != tc.want {
			t.Errorf("replace %d by %v: %q, want %q", tc.id, tc.now, got, tc.want)
		}
		if names(base) != "abc" {
			t.Fatalf("replaceSAs changed its input: %q", names(base))
		}
	}
}

// switchingRecords is a record that an apply replaces while the watcher
// runs.
type switchingRecords struct {
	mu  sync.Mutex
	rec *assign.Record
}

func (r *switchingRecords) Record() (*assign.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec, nil
}
func (r *switchingRecords) WithBodies() (*assign.Record, error) { return r.Record() }

func (r *switchingRecords) set(rec *assign.Record) {
	r.mu.Lock()
	r.rec = rec
	r.mu.Unlock()
}

// After an apply the SAs belong to other rules: the next event asks for
// every SA, not only for its IKE_SA, and the view shows the new record.
func TestWatchEventAfterApplyListsEverything(t *testing.T) {
	srv := vicitest.NewServer(t)
	srv.SetSAs(saOf("peer-a", "1", "11"))
	recs := &switchingRecords{rec: &assign.Record{Policy: "Old", AppliedAt: time.Unix(1000, 0)}}
	r := startWatch(t, WatchOptions{
		Socket:   srv.Socket(),
		Interval: time.Hour,
		Timeout:  5 * time.Second,
		Records:  recs,
		Dial:     func(ctx context.Context) (Watchable, error) { return vici.Dial(ctx, srv.Socket()) },
	})
	policy := func(st *Status) string {
		if st.Policy == nil {
			return ""
		}
		return st.Policy.Name
	}
	r.next(t, 5*time.Second, func(st *Status) bool { return policy(st) == "Old" && len(st.SAs) == 1 })
	waitSubscribers(t, srv, "child-updown")

	recs.set(&assign.Record{Policy: "New", AppliedAt: time.Unix(2000, 0)})
	srv.SetSAs(saOf("peer-a", "1", "11", "12"))
	n := len(srv.Received())
	srv.Emit("child-updown", vicitest.Msg("up", "yes", "peer-a", vicitest.Msg("uniqueid", "1")))
	r.next(t, time.Second, func(st *Status) bool { return policy(st) == "New" && len(st.SAs) == 2 })
	if got := listings(srv, n); len(got) != 1 || got[0] != "" {
		t.Errorf("after an apply, list-sas sent with ike-id %q, want one whole listing", got)
	}
}
