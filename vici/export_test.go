package vici

import "sync/atomic"

// CountQueued makes every pump count the values it took off govici's
// channel into n; the test that calls it must not run in parallel.
func CountQueued(n *atomic.Int64) (restore func()) {
	testHookQueued = func() { n.Add(1) }
	return func() { testHookQueued = nil }
}

// WatchBuffer is govici's channel buffer for Watch.
const WatchBuffer = watchBuffer
