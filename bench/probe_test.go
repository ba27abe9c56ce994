package bench

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/vici"
)

func TestProbe(t *testing.T) {
	sock := os.Getenv("PROBE_SOCK")
	if sock == "" {
		t.Skip()
	}
	ctx := context.Background()
	c, err := vici.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		sas, err := c.ListSAs(ctx, vici.SAFilter{})
		t1 := time.Now()
		conns, err2 := c.ListConns(ctx)
		t2 := time.Now()
		_, err3 := c.Conns(ctx)
		t3 := time.Now()
		t.Logf("list-sas %v (%d, %v) list-conns %v (%d %v) get-conns %v %v", t1.Sub(t0), len(sas), err, t2.Sub(t1), len(conns), err2, t3.Sub(t2), err3)
		var wg sync.WaitGroup
		t0 = time.Now()
		var d1, d2 time.Duration
		wg.Add(2)
		go func() { defer wg.Done(); s := time.Now(); c.ListSAs(ctx, vici.SAFilter{}); d1 = time.Since(s) }()
		go func() { defer wg.Done(); s := time.Now(); c.ListConns(ctx); d2 = time.Since(s) }()
		wg.Wait()
		t.Logf("concurrent: total %v (sas %v conns %v)", time.Since(t0), d1, d2)
	}
}
