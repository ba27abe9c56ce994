package kept

import "sync"

// Ring keeps the last len(keys) values put, by key.
type Ring[K comparable, V any] struct {
	mu   sync.Mutex
	keys [4]K
	vals [4]V
	set  [4]bool
	next int
}

// Get returns the value kept for k, if there is one.
func (r *Ring[K, V]) Get(k K) (V, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.keys {
		if r.set[i] && r.keys[i] == k {
			return r.vals[i], true
		}
	}
	var zero V
	return zero, false
}

// Put keeps v for k, in place of the oldest.
func (r *Ring[K, V]) Put(k K, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[r.next], r.vals[r.next], r.set[r.next] = k, v, true
	r.next = (r.next + 1) % len(r.keys)
}
