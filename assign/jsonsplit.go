package assign

import (
	"bytes"
	"runtime"
	"sync"
)

// splitConnsFrom is the length of a record's connections (bytes, with
// what follows them) from which the fast reader reads them in two halves
// side by side (the record of 5,000 rules holds 3.7 MB of them: 13 of
// its 16 ms). The tests read with 0 (always, where they can be cut) and
// below 0 (never) too.
const splitConnsFrom = 512 << 10

// conns reads the record's connections.
func (d *jsonReader) conns() ([]RecordConn, error) {
	n := d.countOf(`,"hash":`)
	if d.splitFrom >= 0 && len(d.b)-d.i >= d.splitFrom && runtime.GOMAXPROCS(0) > 1 {
		if cs, ok, err := d.connsInTwo(n); ok {
			return cs, err
		}
	}
	return readListSized(d, n, d.conn)
}

// connsEnd and connStart are what the writer puts after the list of
// connections and between two of them: `],"secrets":` comes once, at the
// record's top (no other object has secrets), and `},{"name":"` followed
// by the name and `,"hash":` only between connections (a child, a secret,
// an input: none has a hash after its name). Neither can be inside a
// string: its quotes would be escaped there.
var (
	connsEnd  = []byte(`],"secrets":`)
	connStart = []byte(`},{"name":"`)
	hashAfter = []byte(`,"hash":`)
)

// connsInTwo reads the list of connections at d in two halves on two
// goroutines, cut at a connection about half-way; ok is false when the
// list is not one it can cut (the caller reads it whole).
func (d *jsonReader) connsInTwo(n int) (cs []RecordConn, ok bool, err error) {
	if d.peek() != '[' {
		return nil, false, nil
	}
	start := d.i + 1
	end := bytes.Index(d.b[start:], connsEnd)
	if end < 0 {
		return nil, false, nil
	}
	end += start // the list's ']'
	cut := connCut(d.b[:end], start+(end-start)/2)
	if cut < 0 {
		cut = connCut(d.b[:end], start) // none after the middle: any
	}
	if cut < 0 {
		return nil, false, nil
	}
	// The first half ends with the '}' at cut; the second starts with the
	// '{' after the comma and ends at the list's ']'.
	first := &jsonReader{b: d.b[:cut+1], i: start, interned: map[string]string{}}
	second := &jsonReader{b: d.b[:end+1], i: cut + 2, interned: map[string]string{}}
	var rest []RecordConn
	var restErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rest, restErr = second.connsUntil(']', n/2+1)
	}()
	cs, err = first.connsUntil(0, n)
	wg.Wait()
	if err != nil {
		return nil, true, err
	}
	if restErr != nil {
		return nil, true, restErr
	}
	if second.i != end+1 {
		return nil, true, errSlow
	}
	d.i = end + 1
	return append(cs, rest...), true, nil
}

// connsUntil reads connections separated by commas until the end of d's
// bytes (close 0) or the byte close after one, sized for n.
func (d *jsonReader) connsUntil(close byte, n int) ([]RecordConn, error) {
	out := make([]RecordConn, 0, n)
	for {
		out = append(out, RecordConn{})
		if err := d.conn(&out[len(out)-1]); err != nil {
			return nil, err
		}
		switch {
		case close == 0 && d.i == len(d.b):
			return out, nil
		case d.peek() == ',':
			d.i++
		case close != 0 && d.peek() == close:
			d.i++
			return out, nil
		default:
			return nil, errSlow
		}
	}
}

// connCut is the position of the '}' that ends a connection and is
// followed by another, the first at or after from in b (-1: none).
func connCut(b []byte, from int) int {
	for from < len(b) {
		j := bytes.Index(b[from:], connStart)
		if j < 0 {
			return -1
		}
		at := from + j
		if i := stringEnd(b, at+len(connStart)); i >= 0 && bytes.HasPrefix(b[i:], hashAfter) {
			return at
		}
		from = at + 1
	}
	return -1
}

// stringEnd is the position after the closing quote of the JSON string
// whose contents start at i in b (-1: it does not end in b).
func stringEnd(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return -1
}
