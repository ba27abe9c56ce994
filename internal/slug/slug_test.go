package slug

import (
	"regexp"
	"strings"
	"testing"
)

// old is how render and the guard made slugs before this package.
func old(s string) string {
	s = strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	return s
}

func TestMakeLikeTheRegexp(t *testing.T) {
	for _, s := range []string{"", "-", "Peer 1", "  Peer  1  ", "Web (HTTPS) -> DB", "Ärger über Öl", "日本語 rule", "\xff\xfe bad utf8 \xff",
		strings.Repeat("a", 39) + " b", strings.Repeat("a", 40) + " b", strings.Repeat("ab ", 30), strings.Repeat("-", 50) + "x",
		"İstanbul", "K", "ǅ", "a--b", "A_B.C"} {
		if got, want := Make(s), old(s); got != want {
			t.Errorf("Make(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzMake(f *testing.F) {
	for _, s := range []string{"Peer 1", "Ärger über Öl", strings.Repeat("ab ", 30), "\xff x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Make(s), old(s); got != want {
			t.Errorf("Make(%q) = %q, want %q", s, got, want)
		}
	})
}
