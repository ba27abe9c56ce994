package model

import (
	"fmt"
	"strings"
	"testing"
)

// benchPolicyText is the scale benchmark's policy of n rules (bench/).
func benchPolicyText(n int) string {
	var b strings.Builder
	b.WriteString("assign = \"Generated\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n")
	for i := range n {
		fmt.Fprintf(&b, "\n[[filter_list]]\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.1.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = 22\n", i, i/256, i%256)
	}
	b.WriteString("\n[[policy]]\nname = \"Generated\"\n")
	for i := range n {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Peer %d\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"bench.psk\" } ]\n", i, i)
	}
	return b.String()
}

// go test -run '^$' -bench ScanPositions ./model/
func BenchmarkScanPositions(b *testing.B) {
	text := benchPolicyText(5000)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		scanPositions(text)
	}
}
