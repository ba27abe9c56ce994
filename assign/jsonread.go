package assign

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/swanmgr/swanmgr/render"
)

// The record is read on every apply (4 MB at 5,000 rules: about 75 ms with
// encoding/json). decodeRecord reads what Record.writeState writes (no
// spaces, the keys it writes, unescaped keys) directly, and gives anything
// else — a record written by an older swanmgr, or edited by hand — to
// encoding/json: the result is the same either way
// (TestRecordReadLikeEncodingJSON, FuzzRecordRead).
//
// The fast reader's strings are views of data, not copies (at 5,000 rules
// 15 % of the read's time and a third of its allocations): data, a state
// file read into memory of its own (readState), must never change or be
// reused after it is decoded, and stays in memory as long as the record
// (or guard ruleset) does.

// errSlow says the fast reader met something it leaves to encoding/json.
var errSlow = errors.New("not for the fast reader")

func decodeRecord(data []byte, r *Record) error {
	if fast, ok := readRecordFast(data); ok {
		*r = *fast
		return nil
	}
	return json.Unmarshal(data, r)
}

// readRecordFast is the fast reader; ok is false for what it leaves to
// encoding/json.
func readRecordFast(data []byte) (*Record, bool) {
	return readRecordFastWith(data, splitConnsFrom)
}

// readRecordFastWith is readRecordFast reading the connections in two
// halves from splitFrom bytes on (below 0: never).
func readRecordFastWith(data []byte, splitFrom int) (*Record, bool) {
	var r Record
	d := &jsonReader{b: data, interned: map[string]string{}, splitFrom: splitFrom}
	if err := d.record(&r); err != nil || !d.end() {
		return nil, false
	}
	return &r, true
}

type jsonReader struct {
	b []byte
	i int
	// interned holds the strings sharedString read, each kept once: the
	// guard's entries repeat their shapes, verdicts, counters, protocols
	// and ports thousands of times.
	interned map[string]string
	// splitFrom is where the record's connections are read in two
	// halves (splitConnsFrom).
	splitFrom int
}

func (d *jsonReader) end() bool {
	if d.i < len(d.b) && d.b[d.i] == '\n' {
		d.i++
	}
	return d.i == len(d.b)
}

func (d *jsonReader) byte(c byte) error {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return nil
	}
	return errSlow
}

func (d *jsonReader) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jsonReader) null() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// string reads a string. One without escapes and in valid UTF-8, all
// the writer's but a few, is a view of the data as it is; one with
// escapes (the writer escapes quotes, backslashes, control characters
// and <, >, &: a warning that names a rule holds quotes) or invalid UTF-8
// is decoded by encoding/json alone, so that it reads as there. A raw control
// character (invalid JSON) is left to encoding/json with the rest.
func (d *jsonReader) string() (string, error) {
	if err := d.byte('"'); err != nil {
		return "", err
	}
	start := d.i
	ascii, plain := true, true
	for d.i < len(d.b) {
		// Most of a string is bytes that need no look (the writer's
		// names, hashes and addresses): skipped by table.
		for d.i < len(d.b) && !jsonSpecial[d.b[d.i]] {
			d.i++
		}
		if d.i == len(d.b) {
			break
		}
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if plain && (ascii || utf8.Valid(s)) {
				if len(s) == 0 {
					return "", nil
				}
				// A view of the data, not a copy (see decodeRecord).
				return unsafe.String(&s[0], len(s)), nil
			}
			return unquote(d.b[start-1 : d.i])
		case c == '\\':
			plain = false
			d.i++ // what it escapes, a quote too, is the string's
		case c < 0x20:
			return "", errSlow
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return "", errSlow
}

// jsonSpecial marks the bytes string must look at: the closing quote,
// a backslash, control characters and bytes outside ASCII.
var jsonSpecial = func() (t [256]bool) {
	for c := range t {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf
	}
	return t
}()

// unquote decodes one JSON string (its quotes included) as
// encoding/json does.
func unquote(tok []byte) (string, error) {
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", errSlow
	}
	return s, nil
}

// countOf counts the times a key that each element of a long list
// holds once occurs from here on: a capacity, nothing more (a wrong one
// only costs a larger slice).
func (d *jsonReader) countOf(key string) int {
	return bytes.Count(d.b[d.i:], []byte(key))
}

// keyView reads a key as string does, returning a view of the data
// rather than a copy: keys are only compared, and a field that keeps one
// (a map's key) clones it. The data is never changed while it is read.
func (d *jsonReader) keyView() (string, error) {
	if err := d.byte('"'); err != nil {
		return "", err
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if d.i-1 == start {
				return "", nil
			}
			return unsafe.String(&d.b[start], d.i-1-start), nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return "", errSlow // escapes and non-ASCII keys: encoding/json's
		}
		d.i++
	}
	return "", errSlow
}

// sharedString is string, returning the string read before when it was
// read before (interned).
func (d *jsonReader) sharedString() (string, error) {
	if d.i+1 < len(d.b) && d.b[d.i] == '"' {
		if j := bytes.IndexByte(d.b[d.i+1:], '"'); j >= 0 && bytes.IndexByte(d.b[d.i+1:d.i+1+j], '\\') < 0 {
			if s, ok := d.interned[string(d.b[d.i+1:d.i+1+j])]; ok {
				d.i += j + 2
				return s, nil
			}
		}
	}
	s, err := d.string()
	if err == nil {
		if d.interned == nil {
			d.interned = map[string]string{}
		}
		d.interned[s] = s
	}
	return s, err
}

func (d *jsonReader) int() (int, error) {
	start := d.i
	neg := d.peek() == '-'
	if neg {
		d.i++
	}
	digits := d.i
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int(d.b[d.i]-'0')
		d.i++
	}
	// No digits, a leading zero, or more digits than surely fit: the
	// slow reader's to judge.
	if nd := d.i - digits; nd == 0 || nd > 18 || (d.b[digits] == '0' && nd > 1) {
		d.i = start
		return 0, errSlow
	}
	if neg {
		n = -n
	}
	return n, nil
}

func (d *jsonReader) bool() (bool, error) {
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true, nil
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false, nil
	}
	return false, errSlow
}

// object reads {"key":value,...} of a struct, calling field for each key.
func (d *jsonReader) object(field func(key string) error) error {
	return d.members(field, true)
}

// members reads an object's members; a struct's (once) may not repeat a
// key, a map's may (the last one counts, as for encoding/json).
func (d *jsonReader) members(field func(key string) error, once bool) error {
	if err := d.byte('{'); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.i++
		return nil
	}
	var seenAt [16]string
	seen := seenAt[:0] // encoding/json merges a key given twice; that is its to do
	for {
		k, err := d.keyView()
		if err != nil {
			return err
		}
		if once {
			if slices.Contains(seen, k) || len(seen) == 16 {
				return errSlow
			}
			seen = append(seen, k)
		}
		if err := d.byte(':'); err != nil {
			return err
		}
		if err := field(k); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return errSlow
		}
	}
}

// array reads [v,...] (null: nil, isNull set), calling elem for each.
func (d *jsonReader) array(elem func() error) (isNull bool, err error) {
	if d.null() {
		return true, nil
	}
	if err := d.byte('['); err != nil {
		return false, err
	}
	if d.peek() == ']' {
		d.i++
		return false, nil
	}
	for {
		if err := elem(); err != nil {
			return false, err
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return false, nil
		default:
			return false, errSlow
		}
	}
}

// readListSized is readList for long lists: made at the size of n
// elements (countOf), so that thousands take one slice of their size
// rather than a slice grown to twice it.
func readListSized[T any](d *jsonReader, n int, each func(*T) error) ([]T, error) {
	out := make([]T, 0, n)
	isNull, err := d.array(func() error {
		var zero T
		out = append(out, zero)
		return each(&out[len(out)-1])
	})
	if isNull {
		return nil, err
	}
	return out, err
}

// readList reads an array of T, each element by each; null is nil, [] empty.
func readList[T any](d *jsonReader, each func(*T) error) ([]T, error) {
	out := []T{}
	isNull, err := d.array(func() error {
		var zero T
		out = append(out, zero)
		return each(&out[len(out)-1])
	})
	if isNull {
		return nil, err
	}
	return out, err
}

func (d *jsonReader) strings() ([]string, error) {
	return readList(d, func(s *string) (err error) {
		*s, err = d.string()
		return err
	})
}

func (d *jsonReader) record(r *Record) error {
	return d.object(func(k string) error {
		var err error
		switch k {
		case "version":
			r.Version, err = d.int()
		case "socket":
			r.Socket, err = d.string()
		case "source":
			r.Source, err = d.string()
		case "policy":
			r.Policy, err = d.string()
		case "backend":
			r.Backend, err = d.string()
		case "applied_at":
			start := d.i
			if _, err = d.string(); err == nil {
				err = r.AppliedAt.UnmarshalJSON(d.b[start:d.i])
			}
		case "conns":
			r.Conns, err = d.conns()
		case "secrets":
			r.Secrets, err = readListSized(d, d.countOf(`,"owners":`), d.secret)
		case "keys":
			r.Keys, err = d.strings()
		case "inputs":
			r.Inputs, err = readList(d, func(in *RecordInput) error {
				return d.object(func(k string) error {
					var err error
					switch k {
					case "kind":
						in.Kind, err = d.string()
					case "name":
						in.Name, err = d.string()
					case "fingerprint":
						in.Fingerprint, err = d.string()
					default:
						err = errSlow
					}
					return err
				})
			})
		case "warnings":
			r.Warnings, err = d.strings()
		case "uses_certificates":
			r.UsesCertificates, err = d.bool()
		case "guard_hash":
			r.GuardHash, err = d.string()
		case "leftovers":
			r.Leftovers, err = d.strings()
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) conn(c *RecordConn) error {
	return d.object(func(k string) error {
		var err error
		switch k {
		case "name":
			c.Name, err = d.string()
		case "hash":
			c.Hash, err = d.string()
		case "ike_hash":
			c.IKEHash, err = d.string()
		case "child_hashes":
			if d.null() {
				c.ChildHashes = nil
				return nil
			}
			c.ChildHashes = map[string]string{}
			err = d.members(func(k string) error {
				v, err := d.string()
				c.ChildHashes[strings.Clone(k)] = v // k is a view (keyView)
				return err
			}, false)
		case "origin":
			err = d.origin(&c.Origin)
		case "children":
			c.Children, err = readList(d, d.childOrigin)
		case "view":
			c.View, err = d.string()
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) origin(o *render.Origin) error {
	return d.object(func(k string) error {
		var err error
		switch k {
		case "policy":
			o.Policy, err = d.sharedString()
		case "rule":
			o.Rule, err = d.string()
		case "rule_index":
			o.RuleIndex, err = d.int()
		case "filter_list":
			o.FilterList, err = d.string()
		case "action":
			o.Action, err = d.sharedString()
		case "peer":
			o.Peer, err = d.string()
		case "line":
			o.Line, err = d.int()
		case "file":
			o.File, err = d.string()
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) childOrigin(c *render.ChildOrigin) error {
	return d.object(func(k string) error {
		var err error
		switch k {
		case "name":
			c.Name, err = d.string()
		case "filter_index":
			c.FilterIndex, err = d.int()
		case "line":
			c.Line, err = d.int()
		case "file":
			c.File, err = d.string()
		case "summary":
			c.Summary, err = d.string()
		case "rule":
			c.Rule, err = d.string()
		case "rule_index":
			c.RuleIndex, err = d.int()
		case "filter_list":
			c.FilterList, err = d.string()
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) secret(s *RecordSecret) error {
	return d.object(func(k string) error {
		var err error
		switch k {
		case "name":
			s.Name, err = d.string()
		case "owners":
			s.Owners, err = d.strings()
		case "conns":
			s.Conns, err = d.strings()
		case "fingerprint":
			s.Fingerprint, err = d.string()
		default:
			err = errSlow
		}
		return err
	})
}
