package status

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// bulkInput is a view's input like the benchmark lab's (bench/status_test.go):
// one rule with n filters, each a CHILD_SA of one IKE_SA.
func bulkInput(n int) Input {
	body := &render.Section{}
	body.SetList("local_addrs", "172.16.98.231")
	body.SetList("remote_addrs", "172.31.67.244")
	body.Sub("local", "").Set("auth", "psk")
	body.Sub("remote", "").Set("auth", "psk")
	children := body.Sub("children", "")
	rc := assign.RecordConn{Name: "sm-bulk", Origin: render.Origin{Policy: "Bulk", Rule: "Bulk", FilterList: "Bulk", Action: "negotiate", Peer: "172.31.67.244"}, Body: body}
	ike := vici.IKESA{Name: "sm-bulk", UniqueID: 1, Version: 2, State: "ESTABLISHED", LocalHost: "172.16.98.231", RemoteHost: "172.31.67.244",
		EncrAlg: "AES_GCM_16", EncrKeysize: 256, PRFAlg: "PRF_HMAC_SHA2_384", DHGroup: "CURVE_25519", Established: time.Minute}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("sm-bulk-%d", i+1)
		c := children.Sub(name, "")
		c.SetList("local_ts", "dynamic[tcp]")
		c.SetList("remote_ts", fmt.Sprintf("dynamic[tcp/%d]", 10000+i))
		c.Set("mode", "tunnel")
		c.SetList("esp_proposals", "aes256gcm16")
		rc.Children = append(rc.Children, render.ChildOrigin{Name: name, FilterIndex: i, Summary: fmt.Sprintf("me → 172.31.67.244 tcp any→%d", 10000+i)})
		ike.Children = append(ike.Children, vici.ChildSA{Name: name, UniqueID: uint64(i + 1), State: "INSTALLED", Mode: "TUNNEL", Protocol: "ESP", Encap: true,
			SPIIn: "c1234567", SPIOut: "d1234567", EncrAlg: "AES_GCM_16", EncrKeysize: 256, BytesIn: 1000, BytesOut: 2000, PacketsIn: 10, PacketsOut: 20,
			RekeyTime: 50 * time.Minute, LifeTime: 55 * time.Minute, InstallTime: time.Minute,
			LocalTS: []string{"172.16.98.231/32[tcp]"}, RemoteTS: []string{fmt.Sprintf("172.31.67.244/32[tcp/%d]", 10000+i)}})
	}
	rec := &assign.Record{Policy: "Bulk", Backend: "libipsec", Conns: []assign.RecordConn{rc}}
	return Input{Time: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), Record: rec, SAs: []vici.IKESA{ike}, Loaded: []string{"sm-bulk"}}
}

// The pure part of `swanmgr status` for 1,000 CHILD_SAs: go test -bench
// 'Build|Write' ./status
func BenchmarkBuild(b *testing.B) {
	in := bulkInput(1000)
	for b.Loop() {
		if _, err := Build(in, Filter{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteTable(b *testing.B) {
	st, _ := Build(bulkInput(1000), Filter{})
	for b.Loop() {
		WriteTable(io.Discard, st, TableOptions{})
	}
}

func BenchmarkWriteJSON(b *testing.B) {
	st, _ := Build(bulkInput(1000), Filter{})
	for b.Loop() {
		WriteJSON(io.Discard, st, false)
	}
}
