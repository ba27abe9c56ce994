package vici_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// readPacket reads one VICI packet from a client.
func readPacket(c net.Conn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:])))
	return err
}

func TestHugeLengthPrefixIsRefused(t *testing.T) {
	// Answers every request with a packet that claims 1.2 GB and then
	// trickles bytes: govici alone would allocate the 1.2 GB and wait.
	socket := vicitest.NotCharon(t, func(c net.Conn) {
		for readPacket(c) == nil {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], 1_200_000_000)
			if _, err := c.Write(append(hdr[:], 1, 0, 0, 0)); err != nil {
				return
			}
		}
	})
	c, err := vici.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, cmd := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"get-conns", func(ctx context.Context) error { _, err := c.Conns(ctx); return err }},
		{"list-sas", func(ctx context.Context) error { _, err := c.ListSAs(ctx, vici.SAFilter{}); return err }},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cmd.run(ctx)
		cancel()
		runtime.ReadMemStats(&after)
		want := cmd.name + ": " + socket + " is not a charon VICI socket (the peer announced a 1200000000-byte packet; charon sends at most 524288)"
		if err == nil || err.Error() != want {
			t.Errorf("%s: error\n got %v\nwant %s", cmd.name, err, want)
		}
		if !errors.Is(err, vici.ErrNotVICI) {
			t.Errorf("%s: error %v does not match ErrNotVICI", cmd.name, err)
		}
		n := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes allocated", cmd.name, n)
		if n > 8<<20 {
			t.Errorf("%s: allocated %d bytes answering a hostile socket", cmd.name, n)
		}
	}
}

func TestSilentSocketIsNamed(t *testing.T) {
	// Reads requests and never answers.
	socket := vicitest.NotCharon(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	c, err := vici.Dial(context.Background(), socket, vici.WithCommandTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Conns(context.Background())
	want := "get-conns: no answer from charon within 100ms on " + socket + " (context deadline exceeded)"
	if err == nil || err.Error() != want {
		t.Errorf("default timeout: error\n got %v\nwant %s", err, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Conns(ctx)
	want = "get-conns: charon did not answer on " + socket + " before the deadline (context deadline exceeded)"
	if err == nil || err.Error() != want {
		t.Errorf("caller's deadline: error\n got %v\nwant %s", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not match context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.Conns(ctx)
	if err == nil || !strings.Contains(err.Error(), "get-conns: interrupted while waiting for charon on "+socket) {
		t.Errorf("cancelled: error %v", err)
	}
}
