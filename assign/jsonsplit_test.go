package assign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

// The connections read in two halves are those read whole, cut at a
// connection: not at a child (whose objects also start with a name), nor
// at what looks like a cut inside an escaped name.
func TestRecordConnsReadInTwo(t *testing.T) {
	for _, n := range []int{2, 3, 7, 40} {
		r := &Record{Version: RecordVersion, Socket: "/run/charon.vici", Secrets: []RecordSecret{{Name: "ike-x", Owners: []string{"a"}}}}
		for i := range n {
			name := fmt.Sprintf(`sm-peer-%d},{"name":"x","hash":"y`, i)
			var children []render.ChildOrigin
			hashes := map[string]string{}
			for j := range 3 {
				cn := fmt.Sprintf("sm-peer-%d-%d", i, j) // a key: plain (escaped keys are encoding/json's)
				children = append(children, render.ChildOrigin{Name: cn, Line: j, Summary: `me → "peer"`})
				hashes[cn] = fmt.Sprint(j)
			}
			r.Conns = append(r.Conns, RecordConn{Name: name, Hash: fmt.Sprintf("%032x", i), IKEHash: "i", ChildHashes: hashes,
				Origin: render.Origin{Rule: fmt.Sprintf("Peer %d", i), RuleIndex: i}, Children: children, View: "v"})
		}
		data := written(t, r)
		at := bytes.Index(data, []byte(`"conns":`)) + len(`"conns":`)
		d := &jsonReader{b: data, i: at, interned: map[string]string{}}
		cs, ok, err := d.connsInTwo(n)
		if !ok || err != nil {
			t.Fatalf("%d connections: not read in two (ok %v, %v)", n, ok, err)
		}
		if !bytes.HasPrefix(data[d.i:], []byte(`,"secrets":`)) {
			t.Fatalf("%d connections: the reader stopped at %q", n, data[d.i:min(len(data), d.i+20)])
		}
		var want Record
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cs, want.Conns) {
			t.Fatalf("%d connections read in two:\n%+v\nwant\n%+v", n, cs, want.Conns)
		}
		if !sameRead(t, fmt.Sprintf("%d connections", n), data) {
			t.Fatalf("%d connections: left to encoding/json", n)
		}
	}
	// One connection, none, or null: nothing to cut.
	for _, r := range []*Record{{Conns: []RecordConn{{Name: "a"}}}, {Conns: []RecordConn{}}, {}} {
		data := written(t, r)
		at := bytes.Index(data, []byte(`"conns":`)) + len(`"conns":`)
		d := &jsonReader{b: data, i: at}
		if _, ok, _ := d.connsInTwo(1); ok {
			t.Errorf("%s: cut", data)
		}
	}
}
