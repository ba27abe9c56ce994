package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
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

// touched is n bytes, each written (so that they are resident).
func touched(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
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
	begin(tight)
	waitFor(t, "small heap", func(l int64) bool { return l == Floor })
	big := touched(256 << 20)
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
	begin(lazy)
	if p := debug.SetGCPercent(LazyPercent); p != LazyPercent {
		t.Fatalf("GOGC %d, want %d", p, LazyPercent)
	}
	waitFor(t, "small heap", func(l int64) bool { return l == Floor })
	big := touched(128 << 20)
	runtime.GC()
	waitFor(t, "128 MB live", func(l int64) bool { return l >= 2*128<<20 && l < math.MaxInt64 })
	runtime.KeepAlive(big)
	big = nil
	waitFor(t, "freed", func(l int64) bool { return l == Floor })
}

// StartWide's limit is WideFloor for a small heap, none for one whose
// limit would reach twice WideFloor, and WideFloor again once it is gone;
// the collector runs at WidePercent while there is a limit, at GOGC=100
// while there is none.
func TestWideLimitFollowsTheLiveHeap(t *testing.T) {
	restore(t)
	begin(wide)
	wantGOGC(t, WidePercent, "")
	waitFor(t, "small heap", func(l int64) bool { return l == WideFloor })
	mid := touched(70 << 20) // limit 2*70-24 = 116 MiB
	runtime.GC()
	waitFor(t, "70 MB live", func(l int64) bool { return l >= 110<<20 && l <= 130<<20 })
	wantGOGC(t, WidePercent, " with a limit")
	big := touched(128 << 20)
	runtime.GC()
	waitFor(t, "198 MB live", func(l int64) bool { return l == math.MaxInt64 && gogc() == 100 })
	runtime.KeepAlive(mid)
	runtime.KeepAlive(big)
	mid, big = nil, nil
	waitFor(t, "freed", func(l int64) bool { return l == WideFloor && gogc() == WidePercent })
}

// StartBrief's limit is Start's; the collector runs at BriefPercent
// while there is one, at GOGC=100 while there is none.
func TestBriefLimitFollowsTheLiveHeap(t *testing.T) {
	restore(t)
	begin(brief)
	wantGOGC(t, BriefPercent, "")
	waitFor(t, "small heap", func(l int64) bool { return l == Floor })
	big := touched(128 << 20)
	runtime.GC()
	waitFor(t, "128 MB live", func(l int64) bool { return l == math.MaxInt64 && gogc() == 100 })
	runtime.KeepAlive(big)
	big = nil
	waitFor(t, "freed", func(l int64) bool { return l == Floor && gogc() == BriefPercent })
}

// Start leaves GOGC as it is.
func TestStartKeepsGOGC(t *testing.T) {
	restore(t)
	begin(tight)
	wantGOGC(t, 100, "")
}

// wantGOGC fails t unless GOGC is want now (when: what the message adds).
func wantGOGC(t *testing.T, want int64, when string) {
	t.Helper()
	if p := gogc(); p != want {
		t.Fatalf("GOGC %d%s, want %d", p, when, want)
	}
}

// gogc is the collector's GOGC now.
func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func TestNotWhenTheOperatorTunes(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start() || StartLazy() || StartWide() || StartBrief() {
		t.Fatal("started with GOGC set")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "1GiB")
	if Start() || StartLazy() || StartWide() || StartBrief() {
		t.Fatal("started with GOMEMLIMIT set")
	}
}

func TestLimit(t *testing.T) {
	if Limit(0) != Floor || Limit(36<<20) != Floor || Limit(40<<20) != 56<<20 || Limit(59<<20) != 94<<20 || Limit(60<<20) != math.MaxInt64 || Limit(100<<20) != math.MaxInt64 {
		t.Fatalf("limits %d %d %d %d %d %d", Limit(0), Limit(36<<20), Limit(40<<20), Limit(59<<20), Limit(60<<20), Limit(100<<20))
	}
	if WideLimit(0) != WideFloor || WideLimit(52<<20) != WideFloor || WideLimit(70<<20) != 116<<20 || WideLimit(91<<20) != 158<<20 || WideLimit(92<<20) != math.MaxInt64 {
		t.Fatalf("wide limits %d %d %d %d %d", WideLimit(0), WideLimit(52<<20), WideLimit(70<<20), WideLimit(91<<20), WideLimit(92<<20))
	}
	if LazyLimit(0) != Floor || LazyLimit(100<<20) != 200<<20 {
		t.Fatalf("lazy limits %d %d", LazyLimit(0), LazyLimit(100<<20))
	}
}
