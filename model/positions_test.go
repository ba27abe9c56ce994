package model

import (
	"maps"
	"strconv"
	"strings"
	"testing"
)

// scanBefore is scan as it was before it made its paths in one buffer:
// the reference the fuzz test holds scan to.
func scanBefore(text string, keys bool) map[string]int {
	pos := map[string]int{}
	counts := map[string]int{} // indexed array path -> elements seen
	current := ""
	depth := 0    // open [ or { of a multi-line value
	inMulti := "" // the closing delimiter of a multi-line string
	line := 0
	for rest := text; rest != ""; {
		var raw string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			raw, rest = rest[:i], rest[i+1:]
		} else {
			raw, rest = rest, ""
		}
		line++
		s := strings.TrimSpace(raw)
		if inMulti != "" {
			if strings.Contains(s, inMulti) {
				inMulti = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketDelta(s)
			if depth < 0 {
				depth = 0
			}
			continue
		}
		if s == "" || s[0] == '#' {
			continue
		}
		switch {
		case strings.HasPrefix(s, "[["):
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			parts := splitKey(s[2:end])
			path := ""
			for j, p := range parts {
				if path != "" {
					path += "."
				}
				path += p
				if j == len(parts)-1 {
					n := counts[path]
					counts[path] = n + 1
					path += "[" + strconv.Itoa(n) + "]"
				} else if n, ok := counts[path]; ok && n > 0 {
					path += "[" + strconv.Itoa(n-1) + "]"
				}
			}
			current = path
			pos[current] = line
		case s[0] == '[':
			end := strings.Index(s, "]")
			if end < 0 {
				continue
			}
			current = strings.Join(splitKey(s[1:end]), ".")
			pos[current] = line
		default:
			eq := strings.Index(s, "=")
			if eq < 0 {
				continue
			}
			if keys {
				key := strings.Join(splitKey(s[:eq]), ".")
				full := key
				if current != "" {
					full = current + "." + key
				}
				if _, seen := pos[full]; !seen {
					pos[full] = line
				}
			}
			val := strings.TrimSpace(s[eq+1:])
			for _, q := range []string{`"""`, `'''`} {
				if strings.HasPrefix(val, q) && strings.Count(val, q) == 1 {
					inMulti = q
				}
			}
			if inMulti == "" {
				depth = bracketDelta(val)
				if depth < 0 {
					depth = 0
				}
			}
		}
	}
	return pos
}

// scan finds what it found before, with and without keys.
func FuzzScanAsBefore(f *testing.F) {
	f.Add(benchPolicyText(3))
	f.Add("[[a.b]]\n[[a]]\n[[a.b]]\nx = [\n1,\n]\n[[ \"a\" . b ]]\ny = \"\"\"\nz = 1\n\"\"\"\n[t]\nq = { a = [1] }\n[[..]]\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, keys := range []bool{false, true} {
			if got, want := scan(text, keys), scanBefore(text, keys); !maps.Equal(got, want) {
				t.Fatalf("keys %v: scan %v, want %v", keys, got, want)
			}
		}
	})
}
