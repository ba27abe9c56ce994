package model

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchFolder writes the folder of bench/'s BenchmarkApply (one file per
// peer) of n peers to dir, with the key file beside it.
func benchFolder(b *testing.B, dir string, n int) string {
	b.Helper()
	d := filepath.Join(dir, "policy.d")
	if err := os.Mkdir(d, 0o755); err != nil {
		b.Fatal(err)
	}
	write := func(p, text string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			b.Fatal(err)
		}
	}
	write(filepath.Join(dir, "bench.psk"), "lab-only: generated-benchmark-key-5f1e2d3c\n", 0o600)
	write(filepath.Join(d, "00-base.toml"), "assign = \"Generated\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n", 0o644)
	for i := range n {
		write(filepath.Join(d, fmt.Sprintf("peer-%06d.toml", i)), fmt.Sprintf("[[filter_list]]\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.%d.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = 22\n\n"+
			"[[policy]]\nname = \"Generated\"\n  [[policy.rule]]\n  name = \"Peer %d\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"../bench.psk\" } ]\n",
			i, 1+i/65536, (i/256)%256, i%256, i, i), 0o644)
	}
	return d
}

// A folder of 5,000 peers read, decoded and validated with the files
// kept from the read before (as apply does, the one-rule change's
// difference left aside: one file decoded of 5,001).
//
//	go test -run '^$' -bench FolderKept -benchmem ./model/
func BenchmarkFolderKept(b *testing.B) {
	d := benchFolder(b, b.TempDir(), 5000)
	// read reads and validates the folder with the files kept in saved,
	// and returns what they are then.
	read := func(saved []byte) *Reuse {
		data, err := ReadFile(d)
		if err != nil {
			b.Fatal(err)
		}
		r := NewReuse("bench", saved)
		if _, _, err := ParseValidate(d, data, ValidateOptions{Reuse: r}); err != nil {
			b.Fatal(err)
		}
		return r
	}
	saved, _ := read(nil).Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if taken, _ := read(saved).Counts(); taken != 5001 {
			b.Fatalf("%d files taken", taken)
		}
	}
}
