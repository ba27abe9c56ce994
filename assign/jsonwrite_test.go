package assign

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// jsonOf is what encoding/json writes for v, as stageJSON did.
func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func written(t *testing.T, sw stateWriter) []byte {
	t.Helper()
	var b bytes.Buffer
	w := bufio.NewWriterSize(&b, 1<<10)
	if err := sw.writeState(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sameJSON(t *testing.T, what string, sw stateWriter, v any) {
	t.Helper()
	got, want := written(t, sw), jsonOf(t, v)
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		lo := max(i-60, 0)
		t.Fatalf("%s: written by hand differs from encoding/json at byte %d:\nhand: %q\njson: %q", what, i, got[lo:min(i+60, len(got))], want[lo:min(i+60, len(want))])
	}
}

// The record and its connection settings, written by hand, are byte for
// byte what encoding/json writes: for every example policy rendered for
// each backend, and for values with every kind of string encoding/json
// escapes, empty and missing lists, maps and sections.
func TestStateJSONLikeEncodingJSON(t *testing.T) {
	odd := "plain \"q\" \\ <a&b> \x00\x01\x1f\x7f \b\f\n\r\t é \u2028\u2029 \xff\xfe𝄞 \xe2\x80 end"
	rec := &Record{Version: 1, Socket: odd, Source: odd, Policy: odd, Backend: "kernel",
		AppliedAt: time.Date(2026, 12, 2, 20, 0, 0, 123456789, time.FixedZone("x", 3600)),
		Conns: []RecordConn{
			{Name: odd, Hash: "h", IKEHash: odd, ChildHashes: map[string]string{odd: "a", "b": odd, "": ""},
				Origin:   render.Origin{Policy: odd, Rule: odd, RuleIndex: -1, FilterList: odd, Action: odd, Peer: odd, Line: 3, File: odd},
				Children: []render.ChildOrigin{{Name: "c", FilterIndex: -1, Line: 2, File: odd, Summary: odd, Rule: odd, RuleIndex: 2, FilterList: odd}, {}},
				View:     odd},
			{Name: "empty", ChildHashes: map[string]string{}, Children: []render.ChildOrigin{}},
		},
		Secrets: []RecordSecret{{Name: "s", Owners: []string{}, Fingerprint: odd}, {Name: odd, Owners: []string{odd, ""}, Conns: []string{"x"}}},
		Keys:    []string{odd}, Inputs: []RecordInput{{Kind: "k", Name: odd, Fingerprint: "f"}, {}},
		Warnings: []string{odd}, UsesCertificates: true, GuardHash: odd, Leftovers: []string{odd, ""},
		Pending: Pending{Conns: []string{"not written"}}}
	sameJSON(t, "odd record", rec, rec)
	sameJSON(t, "empty record", &Record{}, &Record{})
	sameJSON(t, "record with empty lists", &Record{Conns: []RecordConn{}, Secrets: []RecordSecret{}, Keys: []string{}, Inputs: []RecordInput{}, Warnings: []string{}},
		&Record{Conns: []RecordConn{}, Secrets: []RecordSecret{}, Keys: []string{}, Inputs: []RecordInput{}, Warnings: []string{}})

	bodies := bodiesFile{
		odd: render.NewSection([]render.Item{
			{Key: odd, Value: odd},
			{Key: "l", List: []string{odd, ""}, IsList: true},
			{Key: "e", List: []string{}, IsList: true},
			{Key: "f", ItemExtra: &render.ItemExtra{FileRefs: []render.FileRef{{Path: odd, Data: []byte{0, 1, 2, 255}}, {Path: "nil"}, {Path: "empty", Data: []byte{}}}}},
			{Key: "x", ItemExtra: &render.ItemExtra{}},
			{Key: "s", Sec: &render.Section{}, ItemExtra: &render.ItemExtra{Note: odd}},
			{Key: "deep", Sec: render.NewSection([]render.Item{{Key: "x", Sec: render.NewSection([]render.Item{}...)}}...)},
			{},
		}...),
		"nil":   nil,
		"empty": {},
	}
	sameJSON(t, "odd bodies", bodies, map[string]*render.Section(bodies))
	sameJSON(t, "no bodies", bodiesFile(nil), map[string]*render.Section(nil))
	sameJSON(t, "empty bodies", bodiesFile{}, map[string]*render.Section{})

	// The policy's copy for --confirm: its bytes in base64, as they are.
	at := time.Date(2026, 12, 7, 15, 0, 0, 987654321, time.FixedZone("y", -7200))
	for i, snap := range []Snapshot{
		{Path: odd, Data: []byte(odd), Insecure: true, Backend: odd, At: at},
		{Path: "/p.toml", Data: bytes.Repeat([]byte("[[policy.rule]]\n\x00\xff"), 70000), Backend: "kernel", At: at},
		{Data: []byte{}, At: at},
		{Data: []byte{1}},
		{Data: []byte{1, 2}},
		{},
	} {
		sameJSON(t, fmt.Sprintf("snapshot %d", i), &snap, &snap)
	}

	examples, _ := filepath.Glob("../examples/*/*.toml")
	if len(examples) < 5 {
		t.Fatalf("only %d example policies", len(examples))
	}
	compared := 0
	for _, p := range examples {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := model.ParseValidate(p, data, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, backend := range []render.Backend{render.Kernel, render.LibIPsec} {
			res, err := render.Render(a, render.Options{Backend: backend})
			if err != nil {
				continue // what a backend cannot do
			}
			r := &Record{Version: RecordVersion, Socket: "/run/charon.vici", Source: p, Policy: res.Policy, Backend: string(backend), AppliedAt: time.Now().UTC(), GuardHash: res.Guard.Hash()}
			b := bodiesFile{}
			for _, c := range res.Conns {
				r.Conns = append(r.Conns, RecordConn{Name: c.Name, Hash: c.Hash(), IKEHash: c.IKEHash(), ChildHashes: c.ChildHashes(), Origin: c.Origin, Children: c.Children, View: viewOfBody(c.Body)})
				b[c.Name] = c.Body
			}
			for _, s := range res.Secrets {
				r.Secrets = append(r.Secrets, RecordSecret{Name: s.Name, Owners: s.Owners, Conns: s.Conns, Fingerprint: "f"})
			}
			sameJSON(t, p+" record", r, r)
			sameJSON(t, p+" bodies", b, map[string]*render.Section(b))
			compared++
		}
	}
	if compared < 5 {
		t.Fatalf("only %d rendered policies compared", compared)
	}
}

// FuzzStateJSON: any string in any of the record's and the settings'
// strings is written as encoding/json writes it.
func FuzzStateJSON(f *testing.F) {
	for _, s := range []string{"", "a", "<>&", "\u2028", "\xff", "\x00\x1f\x7f", "é𝄞", "\\\"", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := &Record{Socket: s, Conns: []RecordConn{{Name: s, ChildHashes: map[string]string{s: s}, Origin: render.Origin{File: s}, Children: []render.ChildOrigin{{Summary: s}}, View: s}},
			Secrets: []RecordSecret{{Owners: []string{s}}}, Warnings: []string{s}}
		sameJSON(t, "fuzzed record", r, r)
		b := bodiesFile{s: render.NewSection(render.Item{Key: s, Value: s, List: []string{s}, ItemExtra: &render.ItemExtra{Note: s, FileRefs: []render.FileRef{{Path: s, Data: []byte(s)}}}})}
		sameJSON(t, "fuzzed bodies", b, map[string]*render.Section(b))
	})
}

// sameRead says a record reads the same with the fast reader as with
// encoding/json, and whether the fast reader took it.
func sameRead(t *testing.T, what string, data []byte) bool {
	t.Helper()
	var want Record
	werr := json.Unmarshal(data, &want)
	fast, ok := readRecordFast(data)
	if !ok {
		return false
	}
	if werr != nil {
		t.Fatalf("%s: the fast reader took what encoding/json refuses (%v)", what, werr)
	}
	want.connIdx, want.secretIdx = nil, nil
	if !reflect.DeepEqual(*fast, want) {
		t.Fatalf("%s: the fast reader reads another record:\nfast %+v\njson %+v", what, *fast, want)
	}
	// Its connections read in two halves wherever they can be cut, and
	// never: the same.
	for _, from := range []int{0, -1} {
		other, ok := readRecordFastWith(data, from)
		if !ok || !reflect.DeepEqual(*other, want) {
			t.Fatalf("%s: with the connections split from %d bytes, the fast reader reads another record (taken: %v):\nfast %+v\njson %+v", what, from, ok, other, want)
		}
	}
	return true
}

// Every record the writer writes reads back with the fast reader as with
// encoding/json, escaped strings too; one spaced out, or with a key
// escaped, written twice or in another case, is left to encoding/json.
func TestRecordReadLikeEncodingJSON(t *testing.T) {
	examples, _ := filepath.Glob("../examples/*/*.toml")
	fastN := 0
	for _, p := range examples {
		data, _ := os.ReadFile(p)
		a, _, err := model.ParseValidate(p, data, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := render.Render(a, render.Options{Backend: render.Kernel})
		if err != nil {
			continue
		}
		r := &Record{Version: RecordVersion, Socket: "/run/charon.vici", Source: p, Policy: res.Policy, Backend: "kernel",
			AppliedAt: time.Date(2026, 12, 2, 20, 1, 2, 3456, time.UTC), GuardHash: res.Guard.Hash(), Keys: []string{"k"}, Warnings: []string{"w é"},
			Inputs: []RecordInput{{Kind: "policy", Name: p, Fingerprint: "f"}}, UsesCertificates: true, Leftovers: []string{"sm-gone"}}
		for _, c := range res.Conns {
			r.Conns = append(r.Conns, RecordConn{Name: c.Name, Hash: c.Hash(), IKEHash: c.IKEHash(), ChildHashes: c.ChildHashes(), Origin: c.Origin, Children: c.Children, View: viewOfBody(c.Body)})
		}
		for _, s := range res.Secrets {
			r.Secrets = append(r.Secrets, RecordSecret{Name: s.Name, Owners: s.Owners, Conns: s.Conns, Fingerprint: "f"})
		}
		if sameRead(t, p, written(t, r)) {
			fastN++
		}
	}
	if fastN < 3 {
		t.Fatalf("the fast reader took only %d of the example records", fastN)
	}
	empty := written(t, &Record{Conns: []RecordConn{{ChildHashes: map[string]string{}, Children: []render.ChildOrigin{}}}, Secrets: []RecordSecret{{Owners: []string{}}}})
	if !sameRead(t, "empty lists", empty) || !sameRead(t, "nulls", written(t, &Record{})) {
		t.Fatal("the fast reader left a record of empty lists or nulls to encoding/json")
	}
	// Escaped strings, as the writer escapes quotes, <, > and &, and
	// invalid UTF-8 are read as encoding/json reads them: a warning that
	// names a rule sent a whole record of 5,000 rules to encoding/json.
	quoted := written(t, &Record{Version: RecordVersion, Socket: "/run/<a>&b",
		Warnings: []string{`policy.toml:3: warning: rule "Peer 1" <&> \ é` + "\n\t\x01"}, Keys: []string{`k"`}})
	if !sameRead(t, "quoted warnings", quoted) {
		t.Error("the fast reader left a record whose warning holds quotes to encoding/json")
	}
	for what, data := range map[string]string{
		"escaped":       `{"version":1,"socket":"a\u003cb\"\\\/\b\f\n\r\tc"}`,
		"surrogates":    `{"socket":"\ud83d\ude00 \ud83d x \ude00"}`,
		"invalid utf8":  "{\"socket\":\"\xff\"}",
		"interned once": `{"guard_hash":"a","policy":"x\"y","backend":"x\"y"}`,
	} {
		if !sameRead(t, what, []byte(data)) {
			t.Errorf("%s: the fast reader left %q to encoding/json", what, data)
		}
	}
	for what, data := range map[string]string{
		"escaped key": `{"vers\u0069on":1}`,
		"raw control": "{\"socket\":\"a\x01\"}",
		"cut escape":  `{"socket":"a\`,
		"spaced":      `{"version": 1}`,
		"twice":       `{"version":1,"version":2}`,
		"other case":  `{"Version":1}`,
		"unknown key": `{"version":1,"x":1}`,
		"float":       `{"version":1.0}`,
		"null string": `{"socket":null}`,
		"bad time":    `{"applied_at":"yesterday"}`,
		"trailing":    `{"version":1}x`,
		"cut":         `{"version":1,"conns":[{"name":"a"`,
	} {
		if sameRead(t, what, []byte(data)) {
			t.Errorf("%s: the fast reader took %q", what, data)
		}
		var a, b Record
		errA, errB := decodeRecord([]byte(data), &a), json.Unmarshal([]byte(data), &b)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: decodeRecord gives %+v, %v; encoding/json %+v, %v", what, a, errA, b, errB)
		}
	}
}

// FuzzRecordRead: whatever the fast reader takes, encoding/json reads the
// same.
func FuzzRecordRead(f *testing.F) {
	f.Add([]byte(`{"version":1,"conns":[{"name":"a","child_hashes":{"x":"y","x":"z"},"origin":{"rule_index":-1},"children":[{"name":"c"}]}],"secrets":null}`))
	f.Add([]byte(`{"applied_at":"2026-12-02T20:00:00.5+01:00","keys":[],"inputs":[{"kind":"k"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameRead(t, "fuzzed", data)
	})
}
