package model

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// positions maps an indexed key path ("policy[0].rule[1].filter_list") to
// the line where it is written. The TOML decoder does not export key
// positions, so a small line scanner recovers them from the file's text.
// It serves error messages and the lines of rules and filters: the scan
// done up front keeps only table headers, which is all a valid policy
// needs; the first question about any other key scans the text again for
// every key. When it cannot place a key, the nearest enclosing table's
// line is used.
type positions struct {
	text string
	// src is the text when text is not kept as a string: a folder's file
	// taken from a Reuse (its headers known), whose text is then a piece
	// of the folder's bytes, made a string only for the full scan.
	src     []byte
	headers map[string]int // indexed table path -> line

	once sync.Once
	all  *keyLines // every key, scanned on first need
}

// keyLines is the full scan.
type keyLines struct {
	at    map[string]int   // indexed path -> line
	plain map[string][]int // index-free path -> lines, sorted
}

// stripIndexes removes "[N]" array indexes from a key path.
func stripIndexes(k string) string {
	if !strings.Contains(k, "[") {
		return k
	}
	var b strings.Builder
	b.Grow(len(k))
	for i := 0; i < len(k); i++ {
		if k[i] == '[' {
			j := i + 1
			for j < len(k) && k[j] >= '0' && k[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(k) && k[j] == ']' {
				i = j
				continue
			}
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// scanPositions records the table headers of a TOML text; the other keys
// are found when first asked for.
func scanPositions(text string) *positions {
	return &positions{text: text, headers: scan(text, false)}
}

// scan records table headers and, with keys, key assignments of a TOML
// text, by indexed path.
func scan(text string, keys bool) map[string]int {
	// Sized for the tables (most headers begin a line): at thousands of
	// rules, growing it was a third of the scan.
	pos := make(map[string]int, strings.Count(text, "\n[")+1)
	// indexed array path -> elements seen; through a pointer, so that
	// counting one more makes no new key.
	counts := map[string]*int{}
	var buf []byte // the header's path being made
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
			// splitKey's parts, joined as they come.
			inner := s[2:end]
			buf = buf[:0]
			for more := true; more; {
				var p string
				if k := strings.IndexByte(inner, '.'); k >= 0 {
					p, inner = inner[:k], inner[k+1:]
				} else {
					p, more = inner, false
				}
				if len(buf) > 0 {
					buf = append(buf, '.')
				}
				buf = append(buf, strings.Trim(strings.TrimSpace(p), `"'`)...)
				if !more {
					n := counts[string(buf)]
					if n == nil {
						n = new(int)
						counts[string(buf)] = n
					}
					buf = append(buf, '[')
					buf = strconv.AppendInt(buf, int64(*n), 10)
					buf = append(buf, ']')
					*n++
				} else if n := counts[string(buf)]; n != nil && *n > 0 {
					buf = append(buf, '[')
					buf = strconv.AppendInt(buf, int64(*n-1), 10)
					buf = append(buf, ']')
				}
			}
			current = string(buf)
			pos[current] = line
		case s[0] == '[':
			end := strings.Index(s, "]")
			if end < 0 {
				continue
			}
			current = strings.Join(splitKey(s[1:end]), ".")
			pos[current] = line
		default:
			eq := strings.IndexByte(s, '=')
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
			// Without an opening bracket the depth stays 0 (closing ones
			// would make it negative, which counts as 0).
			if inMulti == "" && strings.ContainsAny(val, "[{") {
				depth = bracketDelta(val)
				if depth < 0 {
					depth = 0
				}
			}
		}
	}
	return pos
}

// keys returns the full scan, made on first use.
func (p *positions) keys() *keyLines {
	p.once.Do(func() {
		text := p.text
		if p.src != nil {
			text = string(p.src)
		}
		at := scan(text, true)
		all := &keyLines{at: at, plain: map[string][]int{}}
		for k, l := range at {
			pk := stripIndexes(k)
			all.plain[pk] = append(all.plain[pk], l)
		}
		for k, ls := range all.plain {
			sort.Ints(ls)
			all.plain[k] = slices.Compact(ls)
		}
		p.all = all
	})
	return p.all
}

// bracketDelta counts opening minus closing brackets and braces outside
// strings and comments.
func bracketDelta(s string) int {
	d := 0
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#':
			return d
		case r == '[' || r == '{':
			d++
		case r == ']' || r == '}':
			d--
		}
	}
	return d
}

// splitKey splits a dotted TOML key, removing quotes around pieces.
func splitKey(k string) []string {
	var parts []string
	for _, p := range strings.Split(k, ".") {
		p = strings.TrimSpace(p)
		p = strings.Trim(p, `"'`)
		parts = append(parts, p)
	}
	return parts
}

// line returns the line of path or of its nearest enclosing key; 0 if none
// (and for a File that was not parsed from text).
func (p *positions) line(path string) int {
	if p == nil {
		return 0
	}
	if l, ok := p.headers[path]; ok {
		return l // a header's line is the same in the full scan
	}
	at := p.keys().at
	for path != "" {
		if l, ok := at[path]; ok {
			return l
		}
		if strings.HasSuffix(path, "]") && strings.Contains(path, "[") {
			path = path[:strings.LastIndex(path, "[")]
			if l, ok := at[path]; ok {
				return l
			}
			continue
		}
		i := strings.LastIndex(path, ".")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// firstLineOf returns the first line of any indexed path whose index-free
// form is plain ("policy.rule.filtr_list"). A key the scanner cannot see
// (inside an inline table) takes the line of its nearest enclosing key; 0
// if none.
func (p *positions) firstLineOf(plain string) int {
	for plain != "" {
		if ls := p.linesOf(plain); len(ls) > 0 {
			return ls[0]
		}
		i := strings.LastIndex(plain, ".")
		if i < 0 {
			break
		}
		plain = plain[:i]
	}
	return 0
}

// linesOf returns, in order, every line where a key whose index-free form
// is plain is written.
func (p *positions) linesOf(plain string) []int {
	if p == nil {
		return nil
	}
	return p.keys().plain[plain]
}
