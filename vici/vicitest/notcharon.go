package vicitest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// NotCharon listens on a fresh unix socket and runs serve for each
// connection: a peer that is not charon (it may answer garbage, hang up
// or say nothing), for tests of what a client makes of that. Listener
// and folder go when the test ends.
func NotCharon(tb testing.TB, serve func(net.Conn)) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "vicitest")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "not-charon.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return path
}
