package status

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

func TestGroupKeyword(t *testing.T) {
	for in, want := range map[string]string{
		"CURVE_25519": "x25519", "CURVE_448": "x448", "ECP_256": "ecp256", "ECP_384_BP": "ecp384bp",
		"MODP_3072": "modp3072", "MODP_2048_256": "modp2048s256", "NTRU_128": "NTRU_128", "KE1_X": "KE1_X",
	} {
		if got := groupKeyword(in); got != want {
			t.Errorf("groupKeyword(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"aes256gcm16-x25519": "x25519", "aes256gcm16": "", "aes128-sha256-modp3072": "modp3072",
		"aes256-sha384-ecp384": "ecp384", "aes256gcm16-curve25519": "x25519",
	} {
		if got := proposalGroup(in); got != want {
			t.Errorf("proposalGroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecurityText(t *testing.T) {
	first := vici.ChildSA{Protocol: "ESP", EncrAlg: "AES_GCM_16", EncrKeysize: 256}
	rekeyed := first
	rekeyed.DHGroup = "CURVE_25519"
	for _, c := range []struct {
		ch    vici.ChildSA
		known bool
		group string
		want  string
	}{
		{rekeyed, true, "x25519", "ESP AES_GCM_16-256, PFS x25519"},
		{first, true, "x25519", "ESP AES_GCM_16-256, keys from IKE_SA (PFS x25519 from the first rekey)"},
		{first, true, "", "ESP AES_GCM_16-256, no PFS"},
		{first, false, "", "ESP AES_GCM_16-256, keys from IKE_SA"},
		{vici.ChildSA{Protocol: "ESP", EncrAlg: "AES_CBC", EncrKeysize: 128, IntegAlg: "HMAC_SHA2_256_128"}, false, "",
			"ESP AES_CBC-128/HMAC_SHA2_256_128, keys from IKE_SA"},
	} {
		if got := childSecurity(c.ch, c.known, c.group).Text; got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	for alg, want := range map[string]bool{"AES_GCM_16": true, "NULL_AES_GMAC": false, "NULL": false, "AES_CBC": true} {
		if got := confidential(vici.ChildSA{Protocol: "ESP", EncrAlg: alg}); got != want {
			t.Errorf("confidential(ESP %s) = %v", alg, got)
		}
	}
	if confidential(vici.ChildSA{Protocol: "AH", IntegAlg: "HMAC_SHA2_256_128"}) {
		t.Error("AH counted as confidential")
	}
}

func TestParseTSServiceNames(t *testing.T) {
	// charon writes /etc/services names; a dash in one is not a range.
	e, _ := endpoint([]string{"10.0.0.1/32[tcp/zabbix-agent]"}, nil)
	if e.Port == nil || *e.Port != 10050 {
		t.Fatalf("tcp/zabbix-agent: %+v ", e)
	}
	e, _ = endpoint([]string{"10.0.0.1/32[tcp/ircd]"}, nil)
	if e.Port == nil || *e.Port != 6667 || e.Addresses[0] != "10.0.0.1" {
		t.Fatalf("tcp/ircd: %+v", e)
	}
	e, _ = endpoint([]string{"10.0.0.0/8[udp/1000-2000]"}, nil)
	if e.PortRange == nil || *e.PortRange != [2]int{1000, 2000} || e.Addresses[0] != "10.0.0.0/8" {
		t.Fatalf("range: %+v", e)
	}
	e, _ = endpoint([]string{"dynamic[tcp]"}, []string{"192.0.2.1", "2001:db8::1"})
	if strings.Join(e.Addresses, ",") != "192.0.2.1,2001:db8::1" || !e.AnyPort {
		t.Fatalf("dynamic: %+v", e)
	}
	e, _ = endpoint([]string{"10.0.0.0/8[tcp/80]", "10.1.0.0/16[tcp/81]"}, nil)
	if e.AnyPort || e.Port != nil || e.PortRange != nil || PortText(e) != "mixed" {
		t.Fatalf("mixed: %+v", e)
	}
}

func TestUnknownRule(t *testing.T) {
	c := loadCase(t, "testdata/gateway.case.json")
	_, err := Build(Input{Time: c.Time, Record: c.Record}, Filter{Rule: "No such rule"})
	if !errors.Is(err, ErrUnknownRule) || !strings.Contains(err.Error(), `"Mail server"`) {
		t.Fatalf("unknown rule: %v", err)
	}
	_, err = Build(Input{Time: c.Time}, Filter{Rule: "x"})
	if !errors.Is(err, ErrUnknownRule) {
		t.Fatalf("a rule without a policy: %v", err)
	}
}

func TestColorAndWidth(t *testing.T) {
	c := loadCase(t, "testdata/gateway.case.json")
	st := view(t, c)
	var b bytes.Buffer
	if err := WriteTable(&b, st, TableOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if !strings.Contains(s, ansiGreen+"INSTALLED") || !strings.Contains(s, ansiRed+ansiBold+"not loaded") {
		t.Errorf("states are not coloured:\n%s", s)
	}
	for _, w := range []int{80} {
		b.Reset()
		if err := WriteTable(&b, st, TableOptions{Width: w}); err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(b.String(), "\n") {
			if width(line) > w {
				t.Errorf("width %d: line %d is %d wide: %q", w, i+1, width(line), line)
			}
		}
	}
}

func TestEventCounts(t *testing.T) {
	up := vicitest.Msg("up", "yes", "conn", vicitest.Msg("uniqueid", "1", "child-sas",
		vicitest.Msg("c-1", vicitest.Msg("name", "c", "uniqueid", "1"), "c-2", vicitest.Msg("name", "c", "uniqueid", "2"))))
	down := vicitest.Msg("conn", vicitest.Msg("uniqueid", "1"))
	logLine := func(group, msg string) *govici.Message {
		return vicitest.Msg("group", group, "level", "1", "thread", "5", "msg", msg)
	}
	var c EventCounts
	for _, ev := range []struct {
		name    string
		m       *govici.Message
		refresh bool
	}{
		{"ike-updown", vicitest.Msg("up", "yes", "conn", vicitest.Msg("uniqueid", "1")), true},
		{"ike-updown", down, true},
		{"child-updown", up, true},
		{"child-updown", down, true},
		{"ike-rekey", vicitest.Msg("conn", vicitest.Msg("old", vicitest.Msg(), "new", vicitest.Msg())), true},
		{"child-rekey", vicitest.Msg("conn", vicitest.Msg()), true},
		{"log", logLine("ENC", "generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]"), true},
		{"log", logLine("ENC", "parsed IKE_AUTH response 1 [ N(AUTH_FAILED) ]"), true},
		{"log", logLine("ENC", "parsed IKE_AUTH response 1 [ IDr AUTH N(MOBIKE_SUP) ]"), false},
		{"log", logLine("IKE", "received AUTHENTICATION_FAILED notify error"), false},
	} {
		if got := c.Count(vici.Event{Name: ev.name, Message: ev.m}); got != ev.refresh {
			t.Errorf("%s %v: refresh %v, want %v", ev.name, ev.m, got, ev.refresh)
		}
	}
	want := EventCounts{IKEUp: 1, ChildUp: 2, IKERekeys: 1, ChildRekeys: 1, AuthFailures: 2}
	if c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
}

func TestStatisticsNeverInvented(t *testing.T) {
	c := loadCase(t, "testdata/unreachable.case.json")
	st := view(t, c)
	for _, f := range st.Statistics.figures() {
		if f.fig.Value != nil {
			t.Errorf("%s = %d with charon unreachable", f.label, *f.fig.Value)
		}
	}
	c = loadCase(t, "testdata/gateway.case.json")
	st = view(t, c)
	if st.Statistics.Rekeys.Value != nil || st.Statistics.MainModes.Value != nil || st.Statistics.AuthenticationFailures.Value != nil {
		t.Errorf("figures without the counters plugin and without events: %+v", st.Statistics)
	}
	c.Events = &EventCounts{Since: c.Time.Add(-time.Minute), IKERekeys: 2, ChildRekeys: 3}
	st = view(t, c)
	if f := st.Statistics.Rekeys; f.Value == nil || *f.Value != 5 || *f.Source != SourceEvents {
		t.Errorf("rekeys counted from events: %+v", f)
	}
}

// The parallel encoding of many rows gives the same document as
// encoding/json in one piece (compact) and as indenting that (pretty).
func TestEncodeManyRows(t *testing.T) {
	st := view(t, loadCase(t, "testdata/gateway.case.json"))
	for len(st.SAs) < 1000 {
		st.SAs = append(st.SAs, st.SAs...)
	}
	st.SAs = st.SAs[:1001]
	want, err := marshalOne(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, pretty := range []bool{false, true} {
		got, err := encode(st, pretty)
		if err != nil {
			t.Fatal(err)
		}
		w := want
		if pretty {
			w = indentTop(want, 2)
		}
		w = append(w, '\n')
		if !bytes.Equal(got, w) {
			t.Fatalf("pretty %v: the parallel encoding differs:\n%s", pretty, lineDiff(string(w), string(got)))
		}
	}
}

// The record's bodies are read only when the view needs them: not when
// every filter has an SA that tells the rule's PFS; yes for a filter
// without SA.
func TestBodiesOnlyWhenNeeded(t *testing.T) {
	for name, want := range map[string]bool{"kb-alice": false, "eve-refused": true, "gateway": true} {
		if _, asked := viewRecords(t, loadCase(t, "testdata/"+name+".case.json")); asked != want {
			t.Errorf("%s: bodies read %v, want %v", name, asked, want)
		}
	}
	// One CHILD_SA without a group does not tell whether the rule has
	// PFS (the first CHILD_SA takes its keys from the IKE_SA); two do.
	c := loadCase(t, "testdata/kb-alice.case.json")
	rec := c.Record
	one := []vici.IKESA{{Name: "sm-abczz-with-bob", Version: 2, Children: []vici.ChildSA{{Name: "sm-abczz-with-bob-1"}}}}
	lean := *rec
	lean.Conns = []assign.RecordConn{rec.Conns[0]}
	lean.Conns[0].Children = lean.Conns[0].Children[:1]
	if !NeedsBodies(&lean, one) {
		t.Error("one CHILD_SA without a DH group: bodies not asked for")
	}
	two := []vici.IKESA{{Name: "sm-abczz-with-bob", Version: 2, Children: []vici.ChildSA{{Name: "sm-abczz-with-bob-1"}, {Name: "sm-abczz-with-bob-1"}}}}
	if NeedsBodies(&lean, two) {
		t.Error("two CHILD_SAs of one IKE_SA without a group (no PFS): bodies asked for")
	}
	if st := inferPFS(two)["sm-abczz-with-bob"]; !st.known || st.group != "" {
		t.Errorf("inferPFS of two CHILD_SAs without a group: %+v", st)
	}
}

// Many rows are built and written on every CPU; the result is the same as
// on one.
func TestParallelMatchesSequential(t *testing.T) {
	render := func() (string, string) {
		st, err := Build(bulkInput(1000), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		// Groups that change at chunk boundaries: many rules in turn.
		g := view(t, loadCase(t, "testdata/gateway.case.json"))
		for len(st.SAs) < 2000 {
			st.SAs = append(st.SAs, g.SAs...)
		}
		var table, js bytes.Buffer
		if err := WriteTable(&table, st, TableOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(&js, st, false); err != nil {
			t.Fatal(err)
		}
		return table.String(), js.String()
	}
	prev := runtime.GOMAXPROCS(1)
	seqTable, seqJSON := render()
	runtime.GOMAXPROCS(max(prev, 4))
	parTable, parJSON := render()
	runtime.GOMAXPROCS(prev)
	if seqTable != parTable {
		t.Errorf("table differs:\n%s", lineDiff(seqTable, parTable))
	}
	if seqJSON != parJSON {
		t.Errorf("JSON differs:\n%s", lineDiff(seqJSON, parJSON))
	}
}

// appendSA writes exactly what encoding/json writes, for every row of
// every golden case, the bulk view, and rows with every field set or
// unset and strings that need escaping.
func TestAppendSAMatchesJSON(t *testing.T) {
	var rows []SA
	cases, _ := filepath.Glob("testdata/*.case.json")
	for _, p := range cases {
		rows = append(rows, view(t, loadCase(t, p)).SAs...)
	}
	st, _ := Build(bulkInput(10), Filter{})
	rows = append(rows, st.SAs...)
	odd := "q\"b\\s<a>&\n\r\t\x01\x1f é \u2028\u2029 \xff end"
	n, i64, u := 7, int64(-3), uint64(1<<63)
	tm := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	yes := true
	full := SA{Managed: true, Policy: &odd, Rule: &odd, FilterList: &odd, Filter: &n, FilterText: &odd, Action: &odd,
		Connection: odd, Child: odd, Peer: &odd, State: odd, HasSA: true, IKESAID: &u, ChildSAID: &u,
		Source:      Endpoint{Addresses: []string{odd, ""}, AnyPort: true, Port: &n, PortRange: &[2]int{1, 65535}, Selectors: []string{}},
		Destination: Endpoint{},
		Protocol:    &odd, TunnelEndpoint: &odd, HostToHostTunnel: true, Mode: &odd, UDPEncap: &yes,
		Security: &Security{Text: odd, Protocol: &odd, Encryption: &odd, EncryptionKeySize: &n, Integrity: &odd,
			IntegrityKeySize: &n, DHGroup: &odd, Confidential: &yes, SPIIn: &odd, SPIOut: &odd,
			ConfiguredProposals: []string{odd}, ConfiguredPFSGroup: &odd},
		BytesIn: &u, BytesOut: &u, PacketsIn: &u, PacketsOut: &u,
		EstablishedAt: &tm, EstablishedSeconds: &i64, RekeyAt: &tm, RekeyInSeconds: &i64, ExpiresAt: &tm, ExpiresInSeconds: &i64,
		Note: &odd}
	rows = append(rows, full, SA{}, SA{Security: &Security{}})
	for i := range rows {
		want, err := marshalOne(&rows[i])
		if err != nil {
			t.Fatal(err)
		}
		if got := appendSA(nil, &rows[i]); !bytes.Equal(got, want) {
			t.Fatalf("row %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
