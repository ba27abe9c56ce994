package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// The limit follows the live heap: none for a large live heap, Floor
// again once it is gone.
func TestLimitFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetMemoryLimit(math.MaxInt64)
	if !Start() {
		t.Fatal("not started")
	}
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	waitFor := func(what string, ok func(int64) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(limit()); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the limit is %d MB", what, limit()>>20)
			}
			runtime.GC()
		}
	}
	waitFor("small heap", func(l int64) bool { return l == Floor })
	big := make([]byte, 256<<20)
	for i := range big {
		big[i] = byte(i)
	}
	runtime.GC()
	waitFor("256 MB live", func(l int64) bool { return l == math.MaxInt64 })
	runtime.KeepAlive(big)
	big = nil
	waitFor("freed", func(l int64) bool { return l == Floor })
}

func TestNotWhenTheOperatorTunes(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start() {
		t.Fatal("started with GOGC set")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "1GiB")
	if Start() {
		t.Fatal("started with GOMEMLIMIT set")
	}
}

func TestLimit(t *testing.T) {
	if Limit(0) != Floor || Limit(32<<20) != Floor || Limit(40<<20) != 64<<20 || Limit(56<<20) != math.MaxInt64 || Limit(100<<20) != math.MaxInt64 {
		t.Fatalf("limits %d %d %d %d %d", Limit(0), Limit(32<<20), Limit(40<<20), Limit(56<<20), Limit(100<<20))
	}
}
