package cli

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// syncBuffer is a bytes.Buffer written by the command while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// metrics returns only after the exporter's event watch has ended.
func TestMetricsWaitsForRun(t *testing.T) {
	srv := vicitest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"swanmgr", "metrics", "--socket", srv.Socket(), "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for _, e := range status.WatchedEvents {
		for srv.Subscribers(e) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("metrics did not subscribe to %s: %s %s", e, out.String(), errb.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !strings.Contains(out.String(), "serving metrics of charon at "+srv.Socket()) {
		t.Errorf("stdout: %q", out.String())
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d: %s", c, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("metrics did not return after its context ended")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "metrics.(*Exporter).Run") {
		t.Errorf("metrics returned while the exporter's Run was still going:\n%s", stacks)
	}
}
