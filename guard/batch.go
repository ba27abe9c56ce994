package guard

import "strings"

// maxBatch bounds how many elements one command carries.
const maxBatch = 4096

// BatchElements rewrites an nft script (a knftables transaction's text)
// so that each run of element commands names each set once: knftables
// writes one "add element" command per element, and nft's memory and time
// grow with its commands (a new guard of 5,000 rules, 30,000 elements:
// 91 MB and 0.42 s for nft, 51 MB and 0.26 s batched). Within a run of
// element commands (no other command between them, so no set is made or
// removed there) commands on different sets commute; those on one set
// keep their order, consecutive ones of the same verb joined into one.
// Anything else is left as it is, in place.
func BatchElements(script string) string {
	lines := strings.SplitAfter(script, "\n")
	var b strings.Builder
	b.Grow(len(script))
	var run []elementCmd
	for _, line := range lines {
		if c, ok := parseElement(line); ok {
			run = append(run, c)
			continue
		}
		writeBatched(&b, run)
		run = run[:0]
		b.WriteString(line)
	}
	writeBatched(&b, run)
	return b.String()
}

// elementCmd is one element command: "<verb> element <family> <table>
// <set> { <body> }".
type elementCmd struct {
	verb, set, body string // set: "<family> <table> <name>"
}

func parseElement(line string) (elementCmd, bool) {
	l, ok := strings.CutSuffix(line, "\n")
	if !ok {
		return elementCmd{}, false
	}
	var c elementCmd
	for _, v := range []string{"add", "delete"} {
		if rest, ok := strings.CutPrefix(l, v+" element "); ok {
			c.verb, l = v, rest
			break
		}
	}
	if c.verb == "" {
		return elementCmd{}, false
	}
	// family, table, set: three words, then "{ body }".
	end := 0
	for range 3 {
		sp := strings.IndexByte(l[end:], ' ')
		if sp <= 0 {
			return elementCmd{}, false
		}
		end += sp + 1
	}
	c.set = l[:end-1]
	body, ok := strings.CutPrefix(l[end:], "{ ")
	if !ok {
		return elementCmd{}, false
	}
	if c.body, ok = strings.CutSuffix(body, " }"); !ok || c.body == "" {
		return elementCmd{}, false
	}
	return c, true
}

// writeBatched writes a run of element commands, joined per set.
func writeBatched(b *strings.Builder, cmds []elementCmd) {
	type run struct {
		verb   string
		bodies []string
	}
	var order []string
	runs := map[string][]run{}
	for _, c := range cmds {
		rs, seen := runs[c.set]
		if !seen {
			order = append(order, c.set)
		}
		if n := len(rs); n > 0 && rs[n-1].verb == c.verb && len(rs[n-1].bodies) < maxBatch {
			rs[n-1].bodies = append(rs[n-1].bodies, c.body)
		} else {
			rs = append(rs, run{verb: c.verb, bodies: []string{c.body}})
		}
		runs[c.set] = rs
	}
	for _, set := range order {
		for _, r := range runs[set] {
			b.WriteString(r.verb)
			b.WriteString(" element ")
			b.WriteString(set)
			b.WriteString(" { ")
			for i, body := range r.bodies {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(body)
			}
			b.WriteString(" }\n")
		}
	}
}
