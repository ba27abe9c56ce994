package model

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// decoded is what the TOML decoder told of a policy text: the File, the
// keys it did not decode (with their TOML types, for telling unknown
// tables from unknown keys) and the keys written in another case than the
// format's (with the spelling meant).
type decoded struct {
	f         *File
	undecoded []undecodedKey
	miscased  []miscasedKey
}

type undecodedKey struct {
	key toml.Key
	typ string // md.Type: "Hash", "ArrayHash", "String", ...
}

type miscasedKey struct {
	key  toml.Key
	want string
}

// decodeWhole decodes text with one decoder. The decoder keeps every
// key's metadata until it returns (about 15 bytes for each byte of a
// large policy); what parse needs of it is copied out here so that it can
// go.
func decodeWhole(text string) (*decoded, error) {
	f := &File{}
	md, err := toml.Decode(text, f)
	if err != nil {
		return nil, err
	}
	d := &decoded{f: f}
	// The decoder matches keys case-insensitively ("Name" fills name); the
	// policy format is lower case, and two spellings of one key in a table
	// would silently overwrite each other.
	//
	// A text whose every key is one of knownKeys as written (each a field
	// of File's, TestKnownKeysAreFilesFields) has every key decoded: the
	// decoder's own account (md.Undecoded, which joins every key's path
	// again: 5 % of the CPU of validating 10,000 rules, and 8 % of what
	// it allocates) is asked only of a text with another key.
	allKnown := true
	var parentKey toml.Key // the parent of the previous key, and its name
	parent := ""
	for _, k := range md.Keys() {
		last := k[len(k)-1]
		// Keys come table by table: join a parent's name only when it
		// changes (a policy of thousands of rules has as many keys).
		if pk := k[:len(k)-1]; !slices.Equal(pk, parentKey) {
			parentKey, parent = pk, strings.Join(pk, ".")
			// A quoted key with a dot ("a.b") joins into another
			// path: such a text is not known as written.
			for _, p := range pk {
				allKnown = allKnown && !strings.Contains(p, ".")
			}
		}
		known, ok := knownKeys[parent]
		if ok && slices.Contains(known, last) {
			continue
		}
		allKnown = false
		if !ok {
			continue
		}
		for _, c := range known {
			if strings.EqualFold(c, last) {
				d.miscased = append(d.miscased, miscasedKey{key: slices.Clone(k), want: c})
				break
			}
		}
	}
	if !allKnown {
		for _, k := range md.Undecoded() {
			d.undecoded = append(d.undecoded, undecodedKey{key: k, typ: md.Type(k...)})
		}
	}
	return d, nil
}

// Large policies are decoded in pieces (see splitText), on every CPU: the
// decoder's metadata then lives for one piece at a time, not the whole
// file. The result is the one decodeWhole gives; any piece that does not
// decode, or any text whose pieces could mean something else together,
// is decoded whole.
var (
	chunkFrom = 256 << 10 // texts from this size are split
	// About this much text per piece: a one-rule change decodes one
	// piece again, about 5 ms of the decoder's time at 32 KB (20 ms at
	// 128 KB), while a cold decode of 5,000 rules takes 5 % longer.
	chunkTarget = 32 << 10
)

// chunk is one piece of a policy text: from byte start to end, beginning
// with a [[filter_list]], [[filter_action]], [[policy]] or, when rules is
// set, a [[policy.rule]] header that continues the policy before it.
type chunk struct {
	start, end int
	rules      bool
}

// decodeText decodes a policy text, in pieces when it is large, taking
// from r (nil: none) the pieces it has decoded before (see decodeChunks).
func decodeText(text string, r *Reuse) (*decoded, error) {
	if len(text) >= chunkFrom {
		if head, chunks, ok := splitText(text, chunkTarget); ok {
			if d, ok := decodeChunks(text, head, chunks, r); ok {
				return d, nil
			}
		}
	}
	return decodeWhole(text)
}

// decodeChunks decodes the head (the text before the first chunk) and the
// chunks, and joins them; ok is false when any piece fails (decodeWhole
// then gives the decoder's own message) or when a piece holds what only
// the head may hold.
//
// It takes from r (nil: none) the chunks whose text r has the decoded
// result of, and keeps in r those decoded now: a large file in which one
// rule changed then decodes the one or two chunks that hold the change
// (the cuts depend on the text around them only, see splitText). A
// chunk is decoded by itself (see decodePiece), so its result does not
// depend on where in the file it is: its key is its own text and whether
// it continues a policy.
func decodeChunks(text string, head int, chunks []chunk, r *Reuse) (*decoded, bool) {
	type result struct {
		d   *decoded
		err error
	}
	results := make([]result, len(chunks)+1)
	eachOn(runtime.GOMAXPROCS(0), len(results), func() func(int) {
		return func(i int) {
			results[i].d, results[i].err = decodePieceWith(text, head, chunks, i, r)
		}
	})

	out := results[0]
	if out.err != nil {
		return nil, false
	}
	f := out.d.f
	if len(f.FilterLists) > 0 || len(f.FilterActions) > 0 || len(f.Policies) > 0 {
		return nil, false // splitText keeps these out of the head
	}
	nl, na, np := 0, 0, 0
	for _, r := range results[1:] {
		if r.err != nil {
			return nil, false
		}
		g := r.d.f
		if g.Assign != "" || !endpointEmpty(g.Endpoint) {
			return nil, false
		}
		nl, na, np = nl+len(g.FilterLists), na+len(g.FilterActions), np+len(g.Policies)
	}
	// Sized once; nil when empty, as the decoder leaves them.
	f.FilterLists = grown(f.FilterLists, nl)
	f.FilterActions = grown(f.FilterActions, na)
	f.Policies = grown(f.Policies, np)
	// The rules of pieces that continue the last policy, joined into it
	// once (in a new slice: the rules may be a kept chunk's, shared with
	// r, which an append in place would write into). Joined piece by
	// piece, thousands of rules were copied again for every piece.
	var more [][]Rule
	join := func() {
		if len(more) == 0 {
			return
		}
		last := &f.Policies[len(f.Policies)-1]
		n := len(last.Rules)
		for _, m := range more {
			n += len(m)
		}
		rules := make([]Rule, 0, n)
		rules = append(rules, last.Rules...)
		for _, m := range more {
			rules = append(rules, m...)
		}
		last.Rules, more = rules, nil
	}
	for i, r := range results[1:] {
		g := r.d.f
		ps := g.Policies
		if chunks[i].rules {
			// The piece began with [[policy.rule]] under a [[policy]]
			// header of its own; its rules are the last policy's.
			if len(f.Policies) == 0 || len(ps) == 0 {
				return nil, false
			}
			more = append(more, ps[0].Rules)
			ps = ps[1:]
		}
		if len(ps) > 0 {
			join() // before the last policy is another
		}
		f.FilterLists = append(f.FilterLists, g.FilterLists...)
		f.FilterActions = append(f.FilterActions, g.FilterActions...)
		f.Policies = append(f.Policies, ps...)
		out.d.undecoded = append(out.d.undecoded, r.d.undecoded...)
		out.d.miscased = append(out.d.miscased, r.d.miscased...)
	}
	join()
	// The decoder keeps one type per key path (without indexes): the
	// last one written, which is the last piece's.
	if len(out.d.undecoded) > 0 {
		last := map[string]string{}
		for _, u := range out.d.undecoded {
			last[u.key.String()] = u.typ
		}
		for i := range out.d.undecoded {
			out.d.undecoded[i].typ = last[out.d.undecoded[i].key.String()]
		}
	}
	return out.d, true
}

func grown[T any](s []T, n int) []T {
	if n == 0 {
		return s
	}
	return make([]T, 0, n)
}

func endpointEmpty(e Endpoint) bool {
	return e.Name == "" && e.Addresses == nil && e.ID == "" && e.LANInterface == "" && e.RemoteAccessInterface == ""
}

// decodePieceWith is decodePiece taking chunk i-1 from r when r has its
// result, and keeping it there when it decodes cleanly.
func decodePieceWith(text string, head int, chunks []chunk, i int, r *Reuse) (*decoded, error) {
	if r == nil || i == 0 {
		return decodePiece(text, head, chunks, i)
	}
	c := chunks[i-1]
	key := make([]byte, 0, len(chunkKeyPrefix)+1+c.end-c.start)
	key = append(key, chunkKeyPrefix...)
	if c.rules {
		key = append(key, 'r')
	} else {
		key = append(key, '-')
	}
	sum := r.sum(append(key, text[c.start:c.end]...))
	if kept := r.take(sum); kept != nil {
		k := *kept.f
		return &decoded{f: &k}, nil
	}
	d, err := decodePiece(text, head, chunks, i)
	if err == nil && len(d.undecoded) == 0 && len(d.miscased) == 0 && reusable(d.f) {
		k := *d.f
		r.keep(sum, &k, nil)
	}
	return d, err
}

// chunkKeyPrefix sets a chunk's key apart from a whole file's (a folder
// member's), whose text could be the same bytes.
const chunkKeyPrefix = "swanmgr policy chunk\x00"

// decodePiece decodes piece i: 0 is the head, i the chunk i-1; a chunk
// that continues a policy is preceded by a [[policy]] header of its own.
// The decoder's line numbers are not the file's: they appear only in its
// errors, and a piece that fails has the whole text decoded again, which
// gives the message (before, each piece was preceded by as many newlines
// as came before it, which at thousands of rules cost the decoder more
// than small pieces' text).
func decodePiece(text string, head int, chunks []chunk, i int) (d *decoded, err error) {
	defer func() {
		// The decoder is third-party code fed with operator input; the
		// whole text is decoded again on the caller's goroutine, which
		// turns a panic into a message.
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("decoder failure: %v", r)
		}
	}()
	if i == 0 {
		return decodeWhole(text[:head])
	}
	c := chunks[i-1]
	if !c.rules {
		return decodeWhole(text[c.start:c.end])
	}
	return decodeWhole("[[policy]]\n" + text[c.start:c.end])
}

// The headers a chunk may contain, and those a chunk may begin with.
var (
	chunkHeaders = []string{"[[filter_list]]", "[[filter_list.filter]]", "[[filter_action]]", "[[policy]]", "[[policy.rule]]", "[[policy.rule.authentication]]"}
	chunkStarts  = []string{"[[filter_list]]", "[[filter_action]]", "[[policy]]", "[[policy.rule]]"}
	// arrayNames are the top-level arrays chunks hold.
	arrayNames = []string{"filter_list", "filter_action", "policy"}
)

// splitText cuts a policy text into a head and chunks of about target
// bytes, each beginning at an array-of-tables header. ok is false when
// the text is written in a way the pieces could read differently from
// the whole, and then it is decoded whole: multi-line strings (their
// contents could look like headers), any table header after the first
// chunk other than the arrays' own, the arrays or a policy's rules
// defined other than by [[...]] headers (inline, dotted keys, another
// case). A header the scanner takes for one but is not (inside a
// multi-line array, say) leaves the piece before it unterminated, which
// the decoder refuses, so the text is decoded whole then too.
func splitText(text string, target int) (head int, chunks []chunk, ok bool) {
	if strings.Contains(text, `"""`) || strings.Contains(text, `'''`) {
		return 0, nil, false
	}
	head = -1
	inPolicy := false // the current table is a [[policy]] element
	seenPolicy := false
	depth := 0
	last := 0 // start of the current chunk
	for off := 0; off < len(text); {
		end := strings.IndexByte(text[off:], '\n')
		next := len(text)
		if end >= 0 {
			next = off + end + 1
		}
		raw := text[off:next]
		s := strings.TrimSpace(raw)
		start := off
		off = next
		if depth > 0 {
			depth = max(depth+bracketDelta(s), 0)
			continue
		}
		if s == "" || s[0] == '#' {
			continue
		}
		if s[0] == '[' {
			h := s
			if i := strings.IndexByte(h, '#'); i >= 0 {
				h = strings.TrimSpace(h[:i])
			}
			if !slices.Contains(chunkHeaders, h) {
				if head >= 0 || mentionsArray(strings.ToLower(s)) {
					return 0, nil, false
				}
				inPolicy = false
				continue
			}
			if head < 0 && !slices.Contains(chunkStarts[:3], h) {
				return 0, nil, false // a sub-array before its array
			}
			inPolicy = h == "[[policy]]"
			if h == "[[policy.rule]]" && !seenPolicy {
				return 0, nil, false
			}
			if h == "[[policy]]" {
				seenPolicy = true
			}
			if !slices.Contains(chunkStarts, h) {
				continue
			}
			switch {
			case head < 0:
				head, last = start, start
				chunks = append(chunks, chunk{start: start})
			case start-last >= target && (cutAt(text, off) || start-last >= 2*target):
				chunks[len(chunks)-1].end = start
				last = start
				chunks = append(chunks, chunk{start: start, rules: h == "[[policy.rule]]"})
			}
			continue
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			continue // not TOML: the decoder says so
		}
		key := strings.TrimSpace(s[:eq])
		if strings.ContainsAny(key, `"'`) {
			return 0, nil, false
		}
		first, _, _ := strings.Cut(key, ".")
		first = strings.ToLower(strings.TrimSpace(first))
		if head < 0 && slices.Contains(arrayNames, first) || inPolicy && first == "rule" {
			return 0, nil, false
		}
		depth = max(bracketDelta(strings.TrimSpace(s[eq+1:])), 0)
	}
	if len(chunks) < 2 {
		return 0, nil, false
	}
	chunks[len(chunks)-1].end = len(text)
	return head, chunks, true
}

// cutAt says whether a chunk may begin at the header before off (off is
// the start of the line after it), from that line's text alone (a rule's
// or list's name, usually): about one header in eight. Cuts chosen by the
// text around them stay where they were when something before them
// changes, so that a file edited in one place keeps its other chunks (and
// their decoded results, see decodeChunks).
func cutAt(text string, off int) bool {
	line := text[off:]
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(line); i++ {
		h = (h ^ uint32(line[i])) * 16777619
	}
	return h%8 == 0
}

func mentionsArray(lower string) bool {
	for _, n := range arrayNames {
		if strings.Contains(lower, n) {
			return true
		}
	}
	return false
}
