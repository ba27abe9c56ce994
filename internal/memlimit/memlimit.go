package memlimit

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Floor is the least limit: below it the collector works as GOGC=100
// would for any heap under two thirds of it.
const Floor = 48 << 20

// Headroom is how much the limit lets the heap grow beyond the live heap
// of the last collection: the limit is live × (1 + 1/Headroom), at least
// Floor.
const Headroom = 2

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

// Limit is the limit for a live heap of live bytes.
func Limit(live uint64) int64 {
	return max(Floor, int64(live+live/Headroom))
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
