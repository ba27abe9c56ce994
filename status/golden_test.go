package status

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

var (
	update = flag.Bool("update", false, "rewrite the golden .table and .json files in testdata")

	recordSocket = flag.String("record.socket", "", "TestRecord: record a case from the charon at this VICI socket")
	recordState  = flag.String("record.state", "", "TestRecord: swanmgr's state folder for that socket")
	recordOut    = flag.String("record.out", "", "TestRecord: write the case to this file")
)

// goldenCase is one testdata/*.case.json: what charon answered (raw VICI
// messages, in charon's key order) and what swanmgr had recorded, at a
// fixed time. TestGolden serves the replies from a fake charon, so the
// whole path from the wire to the output is tested.
type goldenCase struct {
	Comment string    `json:"comment"`
	Time    time.Time `json:"time"`
	Socket  string    `json:"socket"`
	Filter  Filter    `json:"filter"`
	// Unreachable: no charon; the text of the dial error.
	Unreachable string                     `json:"unreachable,omitempty"`
	Record      *assign.Record             `json:"record"`
	Bodies      map[string]*render.Section `json:"bodies"`
	Events      *EventCounts               `json:"events"`
	Replies     replies                    `json:"replies"`
	// Guard and GuardDrops: the nftables guard swanmgr installed and its
	// drop counts per rule counter, as the live table had them.
	GuardSet   *guard.Ruleset    `json:"guard,omitempty"`
	GuardDrops map[string]uint64 `json:"guard_drops,omitempty"`
	// A change pending confirmation and the last revert.
	Confirmation *assign.Confirmation `json:"confirmation,omitempty"`
	Reverted     *assign.Reverted     `json:"reverted,omitempty"`
}

// Guard implements GuardReader for a case.
func (c *goldenCase) Guard(context.Context, *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	return c.GuardSet, c.GuardDrops, nil
}

// replies are charon's answers; a nil message is a command this charon
// does not know (CMD_UNKNOWN).
type replies struct {
	ListSAs     orderedMessages `json:"list-sas"`   // list-sa events
	ListConns   orderedMessages `json:"list-conns"` // list-conn events
	GetConns    orderedMessage  `json:"get-conns"`
	Stats       orderedMessage  `json:"stats"`
	Version     orderedMessage  `json:"version"`
	GetCounters orderedMessage  `json:"get-counters"`
}

func loadCase(t *testing.T, path string) *goldenCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.Record != nil {
		for i := range c.Record.Conns {
			c.Record.Conns[i].Body = c.Bodies[c.Record.Conns[i].Name]
		}
	}
	if c.Socket == "" {
		c.Socket = "/var/run/charon.vici"
	}
	return &c
}

// caseRecords gives a case's record as a RecordReader would: without the
// bodies unless asked.
type caseRecords struct {
	lean, full *assign.Record
	asked      bool // WithBodies was called
	conf       *assign.Confirmation
	rev        *assign.Reverted
}

func (r *caseRecords) Confirmation() (*assign.Confirmation, *assign.Reverted) { return r.conf, r.rev }

func (r *caseRecords) Record() (*assign.Record, error) { return r.lean, nil }
func (r *caseRecords) WithBodies() (*assign.Record, error) {
	r.asked = true
	return r.full, nil
}

func (c *goldenCase) records() *caseRecords {
	if c.Record == nil {
		return &caseRecords{conf: c.Confirmation, rev: c.Reverted}
	}
	lean := *c.Record
	lean.Conns = slices.Clone(c.Record.Conns)
	for i := range lean.Conns {
		lean.Conns[i].Body = nil
	}
	return &caseRecords{lean: &lean, full: c.Record, conf: c.Confirmation, rev: c.Reverted}
}

// fakeCharon serves a case's replies.
func fakeCharon(t *testing.T, r replies) *vicitest.Server {
	srv := vicitest.NewServer(t)
	srv.Handle("list-sas", func(req *vicitest.Request) *govici.Message {
		for _, m := range r.ListSAs {
			req.Event("list-sa", m)
		}
		return govici.NewMessage()
	})
	srv.Handle("list-conns", func(req *vicitest.Request) *govici.Message {
		for _, m := range r.ListConns {
			req.Event("list-conn", m)
		}
		return govici.NewMessage()
	})
	for cmd, m := range map[string]*govici.Message{
		"get-conns": r.GetConns.Message, "stats": r.Stats.Message,
		"version": r.Version.Message, "get-counters": r.GetCounters.Message,
	} {
		if m == nil {
			srv.Handle(cmd, nil)
			continue
		}
		srv.Handle(cmd, func(*vicitest.Request) *govici.Message { return m })
	}
	return srv
}

// view builds a case's view through a fake charon and vici.Client.
func view(t *testing.T, c *goldenCase) *Status {
	t.Helper()
	st, _ := viewRecords(t, c)
	return st
}

// viewRecords is view, also telling whether the record's bodies were read.
func viewRecords(t *testing.T, c *goldenCase) (*Status, bool) {
	t.Helper()
	in, recs := caseInput(t, c)
	st, err := Build(in, c.Filter)
	if err != nil {
		t.Fatal(err)
	}
	return st, recs.asked
}

// caseInput collects a case's Input through a fake charon and vici.Client.
func caseInput(t *testing.T, c *goldenCase) (Input, *caseRecords) {
	t.Helper()
	recs := c.records()
	var in Input
	if c.Unreachable != "" {
		in = Input{Time: c.Time, DaemonErr: fmt.Errorf("%s", c.Unreachable)}
	} else {
		srv := fakeCharon(t, c.Replies)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client, err := vici.Dial(ctx, srv.Socket())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		in = Collect(ctx, client, recs, CollectOptions{Now: func() time.Time { return c.Time }, Guard: c})
	}
	in.Location = time.UTC
	in.Socket, in.Events = c.Socket, c.Events
	if c.Unreachable != "" {
		in.Record = recs.lean
		readGuard(context.Background(), c, &in)
		readConfirmations(recs, &in)
	}
	return in, recs
}

// TestGolden renders every testdata/*.case.json as a table and as JSON
// and compares with the .table and .json files beside it (-update
// rewrites them).
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.case.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases in testdata: %v", err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".case.json")
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, path)
			st := view(t, c)
			var table, js bytes.Buffer
			if err := WriteTable(&table, st, TableOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, st, false); err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(path, ".case.json")+".table", table.Bytes())
			golden(t, strings.TrimSuffix(path, ".case.json")+".json", js.Bytes())
			checkTable(t, table.String())
			checkJSONMatchesModel(t, js.Bytes(), st)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./status -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (-want +got):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff is a small line diff: lines only in want (-) and only in got (+),
// in order, around the first difference.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d\n", i+1)
	for k := i; k < len(w) && k < i+15; k++ {
		fmt.Fprintf(&b, "-%s\n", w[k])
	}
	for k := i; k < len(g) && k < i+15; k++ {
		fmt.Fprintf(&b, "+%s\n", g[k])
	}
	return b.String()
}

// checkTable holds every table to its promises: no line wider than
// DefaultWidth, no colour codes unless asked.
func checkTable(t *testing.T, s string) {
	t.Helper()
	for i, line := range strings.Split(s, "\n") {
		if n := width(line); n > DefaultWidth {
			t.Errorf("line %d is %d columns wide (> %d): %q", i+1, n, DefaultWidth, line)
		}
		if strings.Contains(line, "\x1b[") {
			t.Errorf("line %d has colour codes without Color: %q", i+1, line)
		}
	}
}

// checkJSONMatchesModel checks that the JSON reads back into the model
// unchanged: every field has a JSON name, none is lost.
func checkJSONMatchesModel(t *testing.T, b []byte, st *Status) {
	t.Helper()
	var back Status
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("JSON does not read back: %v", err)
	}
	b2, _ := json.Marshal(&back)
	b1, _ := json.Marshal(st)
	if !bytes.Equal(b1, b2) {
		t.Errorf("JSON round trip changed the view:\n%s\n%s", b1, b2)
	}
}

// TestRecord records a case from a live charon (a lab host), e.g.
//
//	go test ./status -run TestRecord -record.socket /var/lib/swanmgr/lab/alice/charon.vici \
//	    -record.state /var/lib/swanmgr -record.out testdata/NAME.case.json
//
// Edit its comment afterwards; TestGolden -update writes the outputs.
func TestRecord(t *testing.T) {
	if *recordSocket == "" {
		t.Skip("-record.socket not given")
	}
	sess, err := govici.NewSession(govici.WithSocketPath(*recordSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream := func(cmd, event string) orderedMessages {
		var out orderedMessages
		for m, err := range sess.CallStreaming(ctx, cmd, event, nil) {
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			out = append(out, m)
		}
		return out
	}
	call := func(cmd string) orderedMessage {
		m, err := sess.Call(ctx, cmd, nil)
		if m == nil && err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return orderedMessage{m}
	}
	c := goldenCase{
		Comment: "recorded from " + *recordSocket,
		Time:    time.Now().UTC().Truncate(time.Second),
		Socket:  *recordSocket,
		Replies: replies{
			ListSAs:     stream("list-sas", "list-sa"),
			ListConns:   stream("list-conns", "list-conn"),
			GetConns:    call("get-conns"),
			Stats:       call("stats"),
			Version:     call("version"),
			GetCounters: call("get-counters"),
		},
	}
	if *recordState != "" {
		store := assign.Store{Dir: *recordState}
		rec, err := store.Load(*recordSocket)
		if err != nil {
			t.Fatal(err)
		}
		if rec != nil {
			if err := store.LoadBodies(rec); err != nil {
				t.Fatal(err)
			}
			rec.Inputs = nil
			c.Record = rec
			c.Bodies = map[string]*render.Section{}
			for _, conn := range rec.Conns {
				c.Bodies[conn.Name] = conn.Body
			}
		}
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*recordOut, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
