package memlimit

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Floor is the least limit: below it the collector works as GOGC=100
// would for any heap under two thirds of it.
const Floor = 48 << 20

// Slack is what the limit takes from GOGC=100's goal of twice the live
// heap: live + (live - Slack), at least Floor. At a few tens of MB live
// (an apply of thousands of rules) Floor decides.
const Slack = 16 << 20

var start sync.Once

// Start sets the limit to Floor and has it follow the live heap from then
// on, unless GOMEMLIMIT or GOGC is set. It returns whether it did.
func Start() bool {
	if os.Getenv("GOMEMLIMIT") != "" || os.Getenv("GOGC") != "" {
		return false
	}
	start.Do(func() {
		debug.SetMemoryLimit(Floor)
		arm()
	})
	return true
}

// Off is where the limit stops: a live heap whose limit would be above
// it is collected as GOGC=100 alone has it (a limit near a large heap
// still costs time: the runtime also returns memory to the system sooner).
const Off = 2 * Floor

// Limit is the limit for a live heap of live bytes (math.MaxInt64: none).
func Limit(live uint64) int64 {
	l := max(Floor, 2*int64(live)-Slack)
	if l >= Off {
		return math.MaxInt64
	}
	return l
}

// sentinel is garbage from the moment it is made: its cleanup runs after
// the next collection, adjusts the limit and makes the next sentinel.
type sentinel struct {
	_ [32]byte // not a tiny allocation (those may never be collected)
}

func arm() {
	runtime.AddCleanup(new(sentinel), func(struct{}) { adjust() }, struct{}{})
}

var samples = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}

func adjust() {
	defer arm()
	metrics.Read(samples)
	if samples[0].Value.Kind() != metrics.KindUint64 || samples[1].Value.Kind() != metrics.KindUint64 {
		return
	}
	if int64(samples[1].Value.Uint64()) < 0 {
		return // collection turned off: whoever did set their own limit
	}
	debug.SetMemoryLimit(Limit(samples[0].Value.Uint64()))
}
