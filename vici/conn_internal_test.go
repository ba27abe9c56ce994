package vici

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestBoundedConnPassesPackets: packets within the limit reach the reader
// unchanged, however the bytes are split, and a read deadline in the
// middle of a length does not lose it.
func TestBoundedConnPassesPackets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var stream []byte
	for _, body := range [][]byte{{1, 2, 3}, bytes.Repeat([]byte{7}, 1000), {9}} {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
		stream = append(append(stream, hdr[:]...), body...)
	}
	written, proceed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(written)
		b.Write(stream[:2]) // half a length
		<-proceed
		for i := 2; i < len(stream); i += 7 {
			b.Write(stream[i:min(i+7, len(stream))])
		}
	}()
	bc := newBoundedConn(a, 1000)
	bc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := io.ReadFull(bc, make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	bc.SetReadDeadline(time.Time{})
	close(proceed)
	got := make([]byte, len(stream))
	if _, err := io.ReadFull(bc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Errorf("bytes changed on the way")
	}
	<-written
}

func TestBoundedConnRefusesLongAndEmptyPackets(t *testing.T) {
	for _, l := range []uint32{1001, 0, 1<<32 - 1} {
		a, b := net.Pipe()
		go func() {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], l)
			b.Write(hdr[:])
		}()
		bc := newBoundedConn(a, 1000)
		n, err := bc.Read(make([]byte, 4))
		var bl *badLengthError
		if n != 0 || !errors.As(err, &bl) || bl.length != l {
			t.Errorf("length %d: Read = %d, %v", l, n, err)
		}
		if _, err := bc.Read(make([]byte, 4)); !errors.As(err, &bl) {
			t.Errorf("length %d: a second Read = %v", l, err)
		}
		a.Close()
		b.Close()
	}
}
