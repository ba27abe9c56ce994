package model

import (
	"strings"
	"testing"
)

// go test -run '^$' -bench Decode ./model/
func BenchmarkDecodeCold(b *testing.B) {
	text := benchPolicyText(5000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := decodeText(text, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// One rule's port changed back and forth, the other chunks taken from
// the decoded files kept (as apply does).
func BenchmarkDecodeOneRule(b *testing.B) {
	p := benchPolicyText(5000)
	q := strings.Replace(p, "destination_port = 22\n", "destination_port = 2222\n", 1)
	r := NewReuse("bench", nil)
	if _, err := decodeText(p, r); err != nil {
		b.Fatal(err)
	}
	saved, _ := r.Bytes()
	i := 0
	for b.Loop() {
		text := p
		if i%2 == 0 {
			text = q
		}
		i++
		r := NewReuse("bench", saved)
		if _, err := decodeText(text, r); err != nil {
			b.Fatal(err)
		}
		saved, _ = r.Bytes()
	}
}
