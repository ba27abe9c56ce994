package assign

import (
	"fmt"
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

// benchRecord is a record of n connections like the bench's (one rule
// and one child each), with warnings.
func benchRecord(n int, warnings []string) *Record {
	r := &Record{Version: RecordVersion, Socket: "/run/charon.vici", Source: "/etc/swanmgr/policy.toml", Policy: "Generated", Backend: "kernel", Warnings: warnings}
	for i := range n {
		name := fmt.Sprintf("sm-peer-%d", i)
		r.Conns = append(r.Conns, RecordConn{Name: name, Hash: fmt.Sprintf("%032x", i), IKEHash: fmt.Sprintf("%032x", i+1),
			ChildHashes: map[string]string{name + "-1": fmt.Sprintf("%032x", i+2)},
			Origin:      render.Origin{Policy: "Generated", Rule: fmt.Sprintf("Peer %d", i), RuleIndex: i, FilterList: fmt.Sprintf("Peer %d", i), Action: "negotiate", Peer: fmt.Sprintf("10.1.%d.%d", i/256%256, i%256), Line: 10 + 5*i},
			Children:    []render.ChildOrigin{{Name: name + "-1", Line: 12 + 5*i, Summary: fmt.Sprintf("me → 10.1.%d.%d tcp/22", i/256%256, i%256), Rule: fmt.Sprintf("Peer %d", i), RuleIndex: i, FilterList: fmt.Sprintf("Peer %d", i)}},
			View:        fmt.Sprintf("local=172.16.98.231 remote=10.1.%d.%d | %s-1 transport dynamic[tcp] === dynamic[tcp/22]", i/256%256, i%256, name)})
	}
	return r
}

// BenchmarkRecordRead reads a record of 5,000 connections, as every apply
// does, with and without a warning that names a rule (quotes, which the
// writer escapes):
//
//	go test -run '^$' -bench RecordRead -benchmem ./assign/
func BenchmarkRecordRead(b *testing.B) {
	for _, c := range []struct {
		name     string
		warnings []string
	}{
		{"plain", nil},
		{"quoted-warning", []string{`policy.toml:12: warning: policy "Generated" rule "Peer 7": its filter list is empty`}},
	} {
		b.Run(c.name, func(b *testing.B) {
			data := written(&testing.T{}, benchRecord(5000, c.warnings))
			if _, ok := readRecordFast(data); !ok {
				b.Fatal("the fast reader left the record to encoding/json")
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				var r Record
				if err := decodeRecord(data, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
