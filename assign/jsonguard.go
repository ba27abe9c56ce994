package assign

import (
	"bufio"
	"encoding/json"
	"strconv"

	"github.com/swanmgr/swanmgr/guard"
)

// The guard's record (1.6 MB at 5,000 rules) is read at every apply that
// changes something and written at every one that changes the guard:
// with encoding/json that was about 40 ms and 12 ms at 5,000 rules, and a
// slice grown element by element. Like the record, it is written by hand,
// byte for byte what encoding/json writes (TestGuardJSONLikeEncodingJSON),
// and read by a reader of exactly that form, anything else going to
// encoding/json (TestGuardReadLikeEncodingJSON, FuzzGuardRead).

// guardFile is the guard's record as a state file.
type guardFile struct{ rs *guard.Ruleset }

func (g guardFile) writeState(w *bufio.Writer) error {
	rs := g.rs
	if rs == nil {
		_, err := w.WriteString("null\n")
		return err
	}
	b := make([]byte, 0, 64<<10)
	b = append(b, '{')
	if rs.Format != 0 {
		b = append(b, `"format":`...)
		b = strconv.AppendInt(b, int64(rs.Format), 10)
		b = append(b, ',')
	}
	b = append(b, `"backend":`...)
	b = appendString(b, string(rs.Backend))
	b = append(b, `,"rules":`...)
	b = appendList(b, rs.Rules, func(b []byte, r *guard.Rule) []byte {
		b = append(b, `{"name":`...)
		b = appendString(b, r.Name)
		b = append(b, `,"counter":`...)
		b = appendString(b, r.Counter)
		b = append(b, `,"verdict":`...)
		b = appendString(b, string(r.Verdict))
		return append(b, '}')
	})
	b = append(b, `,"entries":`...)
	if rs.Entries == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		var err error
		for i := range rs.Entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEntry(b, &rs.Entries[i])
			if b, err = flushAt(w, b); err != nil {
				return err
			}
		}
		b = append(b, ']')
	}
	b = append(b, '}', '\n')
	_, err := w.Write(b)
	return err
}

func appendEntry(b []byte, e *guard.Entry) []byte {
	b = append(b, `{"family":`...)
	b = strconv.AppendInt(b, int64(e.Family), 10)
	b = append(b, `,"shape":`...)
	b = appendString(b, e.Shape)
	b = append(b, `,"key":`...)
	b = appendStrings(b, e.Key)
	b = append(b, `,"verdict":`...)
	b = appendString(b, string(e.Verdict))
	if e.Counter != "" {
		b = appendKey(b, true, "counter")
		b = appendString(b, e.Counter)
	}
	if e.Low {
		b = append(b, `,"low":true`...)
	}
	return append(b, '}')
}

// decodeGuard reads a guard record.
func decodeGuard(data []byte, rs *guard.Ruleset) error {
	if fast, ok := readGuardFast(data); ok {
		*rs = *fast
		return nil
	}
	return json.Unmarshal(data, rs)
}

// readGuardFast is the fast reader of guard records; ok is false for what
// it leaves to encoding/json.
func readGuardFast(data []byte) (*guard.Ruleset, bool) {
	var rs guard.Ruleset
	d := &jsonReader{b: data, interned: map[string]string{}}
	if err := d.ruleset(&rs); err != nil || !d.end() {
		return nil, false
	}
	return &rs, true
}

func (d *jsonReader) ruleset(rs *guard.Ruleset) error {
	return d.object(func(k string) error {
		var err error
		var s string
		switch k {
		case "format":
			rs.Format, err = d.int()
		case "backend":
			s, err = d.string()
			rs.Backend = guard.Backend(s)
		case "rules":
			rs.Rules, err = readListSized(d, d.countOf(`{"name":`), d.guardRule) // entries have no name
		case "entries":
			rs.Entries, err = readListSized(d, d.countOf(`{"family":`), d.guardEntry)
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) guardRule(r *guard.Rule) error {
	return d.object(func(k string) error {
		var err error
		var s string
		switch k {
		case "name":
			r.Name, err = d.string()
		case "counter":
			r.Counter, err = d.string()
		case "verdict":
			s, err = d.string()
			r.Verdict = guard.Verdict(s)
		default:
			err = errSlow
		}
		return err
	})
}

func (d *jsonReader) guardEntry(e *guard.Entry) error {
	return d.object(func(k string) error {
		var err error
		var s string
		switch k {
		case "family":
			e.Family, err = d.int()
		case "shape":
			e.Shape, err = d.sharedString()
		case "key":
			// Up to eight parts read into a buffer and kept at their
			// number (a list grown part by part takes three slices).
			var at [8]string
			parts := at[:0]
			var isNull bool
			isNull, err = d.array(func() error {
				s, err := d.sharedString()
				parts = append(parts, s)
				return err
			})
			if !isNull {
				e.Key = append(make([]string, 0, len(parts)), parts...)
			}
		case "verdict":
			s, err = d.sharedString()
			e.Verdict = guard.Verdict(s)
		case "counter":
			e.Counter, err = d.sharedString()
		case "low":
			e.Low, err = d.bool()
		default:
			err = errSlow
		}
		return err
	})
}
