package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func limitNow() int64 { return debug.SetMemoryLimit(-1) }

// waitFor collects until the limit is what ok wants (the adjusting runs
// after a collection, on the runtime's cleanup goroutine).
func waitFor(t *testing.T, what string, ok func(int64) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(limitNow()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the limit is %d MB", what, limitNow()>>20)
		}
		runtime.GC()
	}
}

func restore(t *testing.T) {
	t.Cleanup(func() {
		generation.Add(1) // the test's sentinels stop
		debug.SetMemoryLimit(math.MaxInt64)
		debug.SetGCPercent(100)
	})
}

// The limit follows the live heap: none for a large live heap, Floor
// again once it is gone.
func TestLimitFollowsTheLiveHeap(t *testing.T) {
	restore(t)
	begin(false)
	waitFor(t, "small heap", func(l int64) bool { return l == Floor })
	big := make([]byte, 256<<20)
	for i := range big {
		big[i] = byte(i)
	}
	runtime.GC()
	waitFor(t, "256 MB live", func(l int64) bool { return l == math.MaxInt64 })
	runtime.KeepAlive(big)
	big = nil
	waitFor(t, "freed", func(l int64) bool { return l == Floor })
}

// StartLazy's collector runs at LazyPercent, its limit twice a large
// live heap (never none), Floor for a small one.
func TestLazyLimitFollowsTheLiveHeap(t *testing.T) {
	restore(t)
	begin(true)
	if p := debug.SetGCPercent(LazyPercent); p != LazyPercent {
		t.Fatalf("GOGC %d, want %d", p, LazyPercent)
	}
	waitFor(t, "small heap", func(l int64) bool { return l == Floor })
	big := make([]byte, 128<<20)
	for i := range big {
		big[i] = byte(i)
	}
	runtime.GC()
	waitFor(t, "128 MB live", func(l int64) bool { return l >= 2*128<<20 && l < math.MaxInt64 })
	runtime.KeepAlive(big)
	big = nil
	waitFor(t, "freed", func(l int64) bool { return l == Floor })
}

func TestNotWhenTheOperatorTunes(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start() || StartLazy() {
		t.Fatal("started with GOGC set")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "1GiB")
	if Start() || StartLazy() {
		t.Fatal("started with GOMEMLIMIT set")
	}
}

func TestLimit(t *testing.T) {
	if Limit(0) != Floor || Limit(34<<20) != Floor || Limit(40<<20) != 60<<20 || Limit(57<<20) != 94<<20 || Limit(58<<20) != math.MaxInt64 || Limit(100<<20) != math.MaxInt64 {
		t.Fatalf("limits %d %d %d %d %d %d", Limit(0), Limit(34<<20), Limit(40<<20), Limit(57<<20), Limit(58<<20), Limit(100<<20))
	}
	if LazyLimit(0) != Floor || LazyLimit(100<<20) != 200<<20 {
		t.Fatalf("lazy limits %d %d", LazyLimit(0), LazyLimit(100<<20))
	}
}
