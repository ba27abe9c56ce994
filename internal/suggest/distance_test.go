package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"apply", "apply", 0},
		{"aply", "apply", 1},
		{"appyl", "apply", 2},
		{"", "plan", 4},
		{"destination_prot", "destination_port", 2},
		{"Apply", "apply", 1},
		{"größe", "grösse", 2}, // runes, not bytes
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.b, c.a, got, c.want)
		}
	}
}
