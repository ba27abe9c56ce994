package status

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
)

func BenchmarkZZExp(b *testing.B) {
	sock := os.Getenv("PROF_SOCK")
	if sock == "" {
		b.Skip()
	}
	ctx := context.Background()
	c, _ := vici.Dial(ctx, sock)
	defer c.Close()
	small := func() { c.Conns(ctx); c.Version(ctx); c.Stats(ctx); c.Counters(ctx) }
	rec := func() {
		rr := &RecordReader{Store: assign.Store{Dir: os.Getenv("PROF_STATE")}, Socket: sock}
		rr.Load()
	}
	variants := []struct {
		name string
		par  []func()
	}{{"alone", nil}, {"small", []func(){small}}, {"record", []func(){rec}}, {"both", []func(){small, rec}}}
	tot := make([]time.Duration, len(variants))
	for i := 0; i < b.N; i++ {
		for k, v := range variants {
			t0 := time.Now()
			var wg sync.WaitGroup
			for _, f := range v.par {
				wg.Add(1)
				go func() { defer wg.Done(); f() }()
			}
			c.ListSAs(ctx, vici.SAFilter{})
			wg.Wait()
			tot[k] += time.Since(t0)
		}
	}
	for k, v := range variants {
		b.Logf("%s %v", v.name, tot[k]/time.Duration(b.N))
	}
}
