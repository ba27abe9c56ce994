package memlimit

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Floor is the least limit: below it the collector works as GOGC=100
// would for any heap under two thirds of it.
const Floor = 48 << 20

// Slack is what the limit takes from GOGC=100's goal of twice the live
// heap: live + (live - Slack), at least Floor. At a few tens of MB live
// (an apply of thousands of rules) Floor decides: up to 36 MiB live. It
// was 16 MiB (32 MiB live) until a one-rule change at 5,000 rules held
// the connections rendered before (render.Prior, 3.5 MB) at its peak of
// some 35 MiB live: its limit rose to 54 MiB and its peak RSS over 64 MB;
// then 20 MiB, until the same change to a folder of 5,001 files (some 37
// MiB live as its parse ends) did the same: at 24, its peak RSS is 2.7 MB
// lower (median of 32 alternating changes) in the same time.
const Slack = 24 << 20

// Off is where the limit stops: a live heap whose limit would be above
// it is collected as GOGC=100 alone has it (a limit near a large heap
// still costs time: the runtime also returns memory to the system sooner).
const Off = 2 * Floor

// LazyPercent is the GOGC of StartLazy.
const LazyPercent = 400

// WideFloor is StartWide's least limit: with the binary's own pages (some
// 14 MB), what keeps the validation and rendering of 10,000 rules under
// 100 MB (with GOGC=100 alone they reached 94-102 MB, and took no less
// time: 0.490 s against 0.462 s with a limit of 86 MiB, 16 runs
// alternating). 80 MiB since the collector runs at WidePercent below it.
const WideFloor = 80 << 20

// WidePercent is StartWide's GOGC while its limit applies: the decoder's
// garbage is collected when the heap reaches three times what is live, or
// the limit, rather than twice (17 collections at 10,000 rules, most with
// under 20 MB live). Where the limit is off, GOGC is 100 again.
const WidePercent = 200

// BriefPercent is StartBrief's GOGC while its limit applies: a one-rule
// change at 5,000 rules collected ten times at GOGC=100, its goals (31-37
// MB) below the limit, with the collector's assists on the apply's path;
// at 200 the limit decides. Where the limit is off, GOGC is 100 again.
const BriefPercent = 200

var start sync.Once

// mode is what begin set up.
type mode int32

const (
	tight mode = iota // Start
	lazy              // StartLazy
	wide              // StartWide
	brief             // StartBrief
)

// Start sets the limit to Floor and has it follow the live heap from then
// on (Limit), unless GOMEMLIMIT or GOGC is set. It returns whether it did.
// For a run that holds much of what it allocates (an apply).
func Start() bool { return startOnce(tight) }

// StartBrief is Start for a run that ends when its work is done (apply,
// plan, revert): the same limit, with the collector at BriefPercent below
// it, so that the limit rather than GOGC=100 says when to collect. A
// long-running process (the agent) keeps Start: its heap between applies
// stays at what GOGC=100 allows.
func StartBrief() bool { return startOnce(brief) }

// StartLazy is Start for a long-running monitor with a small heap and
// much garbage (status --watch re-lists every SA each second): the
// collector runs at GOGC=LazyPercent, the limit (LazyLimit) keeping the
// heap at most what GOGC=100 would allow beyond Floor. At 1,000 CHILD_SAs
// the collector was a quarter of the watch's CPU.
func StartLazy() bool { return startOnce(lazy) }

// StartWide is Start with WideFloor for Floor (and twice it for Off), for
// a run that allocates much and keeps little (validate, render: the
// decoder's garbage): the collector runs at WidePercent, the limit bounds
// the heap where that would let it grow past the memory the run needs,
// and a large policy (no limit) is collected as GOGC=100 has it.
func StartWide() bool { return startOnce(wide) }

func startOnce(m mode) bool {
	if os.Getenv("GOMEMLIMIT") != "" || os.Getenv("GOGC") != "" {
		return false
	}
	start.Do(func() { begin(m) })
	return true
}

// Limit is the limit for a live heap of live bytes (math.MaxInt64: none).
func Limit(live uint64) int64 {
	l := max(Floor, 2*int64(live)-Slack)
	if l >= Off {
		return math.MaxInt64
	}
	return l
}

// WideLimit is StartWide's limit for a live heap of live bytes
// (math.MaxInt64: none).
func WideLimit(live uint64) int64 {
	l := max(WideFloor, 2*int64(live)-Slack)
	if l >= 2*WideFloor {
		return math.MaxInt64
	}
	return l
}

// LazyLimit is StartLazy's limit for a live heap of live bytes.
func LazyLimit(live uint64) int64 {
	return max(Floor, 2*int64(live))
}

// generation is the adjusting in force: a sentinel of another (a test's
// begin before) adjusts nothing and ends.
var (
	generation atomic.Int64
	modeNow    atomic.Int32
	// percentNow is the GOGC the wide or brief mode last set.
	percentNow atomic.Int32
)

func begin(m mode) {
	modeNow.Store(int32(m))
	g := generation.Add(1)
	if m == lazy {
		debug.SetGCPercent(LazyPercent)
	}
	if p := limitedPercent(m); p != 0 {
		debug.SetGCPercent(p)
		percentNow.Store(int32(p))
	}
	debug.SetMemoryLimit(limitFor(m, 0))
	arm(g)
}

// limitFor is mode m's limit for a live heap of live bytes.
func limitFor(m mode, live uint64) int64 {
	switch m {
	case lazy:
		return LazyLimit(live)
	case wide:
		return WideLimit(live)
	}
	return Limit(live)
}

// limitedPercent is mode m's GOGC while a limit applies (0: m leaves GOGC
// as it is).
func limitedPercent(m mode) int {
	switch m {
	case wide:
		return WidePercent
	case brief:
		return BriefPercent
	}
	return 0
}

// sentinel is garbage from the moment it is made: its cleanup runs after
// the next collection, adjusts the limit and makes the next sentinel.
type sentinel struct {
	_ [32]byte // not a tiny allocation (those may never be collected)
}

func arm(g int64) {
	runtime.AddCleanup(new(sentinel), adjust, g)
}

func adjust(g int64) {
	if generation.Load() != g {
		return
	}
	defer arm(g)
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() != metrics.KindUint64 || samples[1].Value.Kind() != metrics.KindUint64 {
		return
	}
	if int64(samples[1].Value.Uint64()) < 0 {
		return // collection turned off: whoever did set their own limit
	}
	live := samples[0].Value.Uint64()
	m := mode(modeNow.Load())
	limit := limitFor(m, live)
	if generation.Load() != g {
		return
	}
	debug.SetMemoryLimit(limit)
	if lp := limitedPercent(m); lp != 0 {
		// The mode's GOGC below the limit; GOGC=100 alone without one
		// (a large policy: its heap would otherwise reach three times
		// what is live).
		p := int32(lp)
		if limit == math.MaxInt64 {
			p = 100
		}
		if percentNow.Swap(p) != p {
			debug.SetGCPercent(int(p))
		}
	}
}
