package model

import (
	"sync"
	"sync/atomic"
)

// eachOn calls a worker's function for every index below n, on up to
// workers goroutines: each worker is made by worker (its state its own,
// a scratch buffer, a validator) and takes the next index whenever it is
// done with one, so that slow items do not hold the others up. It
// returns once all are done; with one worker (or one item) it runs on
// the calling goroutine.
func eachOn(workers, n int, worker func() func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		if n > 0 {
			each := worker()
			for i := range n {
				each(i)
			}
		}
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			each := worker()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				each(i)
			}
		}()
	}
	wg.Wait()
}
