package kept

import "testing"

// A ring gives back what was put for a key, and forgets the oldest of
// more than four.
func TestRing(t *testing.T) {
	var r Ring[int, string]
	if _, ok := r.Get(0); ok {
		t.Fatal("an empty ring holds the zero key")
	}
	for i := 1; i <= 5; i++ {
		r.Put(i, string(rune('a'+i)))
	}
	if _, ok := r.Get(1); ok {
		t.Error("the oldest of five is kept")
	}
	for i := 2; i <= 5; i++ {
		if v, ok := r.Get(i); !ok || v != string(rune('a'+i)) {
			t.Errorf("key %d: %q, %v", i, v, ok)
		}
	}
}
