package status

import (
	"bytes"
	"encoding/json"
	"io"
	"runtime"
	"sync"
)

// marshalOne encodes v without escaping <, > and & ("<Dynamic>" stays
// readable) and without a trailing newline.
func marshalOne(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// saKey is where the rows go in the encoded document.
const saKey = `"security_associations":[]`

// marshal encodes a view compactly. Thousands of SA rows are encoded on
// all CPUs and spliced into the rest of the document: a view is written
// once its SAs are known, so this is on the path an operator waits for.
func marshal(st *Status) ([]byte, error) {
	if len(st.SAs) < 256 {
		return marshalOne(st)
	}
	shell := *st
	shell.SAs = []SA{}
	head, err := marshalOne(&shell)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(head, []byte(saKey))
	if at < 0 {
		return marshalOne(st)
	}
	workers := min(runtime.GOMAXPROCS(0), 8)
	parts := make([][]byte, workers)
	errs := make([]error, workers)
	per := (len(st.SAs) + workers - 1) / workers
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		lo, hi := k*per, min((k+1)*per, len(st.SAs))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A slice of rows encodes as a JSON array: drop its brackets.
			b, err := marshalOne(st.SAs[lo:hi])
			if err == nil {
				b = b[1 : len(b)-1]
			}
			parts[k], errs[k] = b, err
		}()
	}
	wg.Wait()
	out := make([]byte, 0, len(head)+len(st.SAs)*2048)
	out = append(out, head[:at+len(saKey)-1]...)
	first := true
	for k, p := range parts {
		if errs[k] != nil {
			return nil, errs[k]
		}
		if len(p) == 0 {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		out = append(out, p...)
		first = false
	}
	out = append(out, head[at+len(saKey)-1:]...)
	return out, nil
}

// WriteJSON writes a view as one JSON document (docs/status-json.md). With
// compact it is one line (one object per line when watching); otherwise
// the document's top two levels are indented and every deeper value (an
// SA, an IKE_SA, a statistic) is one line of its own: readable, and far
// cheaper than indenting thousands of SAs field by field.
func WriteJSON(w io.Writer, st *Status, compact bool) error {
	b, err := marshal(st)
	if err != nil {
		return err
	}
	if !compact {
		b = indentTop(b, 2)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// indentTop indents compact JSON like json.Indent with two spaces, but
// only containers opened above depth levels; deeper ones stay on one line.
func indentTop(b []byte, levels int) []byte {
	out := make([]byte, 0, len(b)+len(b)/16+1024)
	depth := 0
	newline := func(d int) {
		out = append(out, '\n')
		for i := 0; i < d; i++ {
			out = append(out, ' ', ' ')
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch c {
		case '"':
			j := stringEnd(b, i)
			out = append(out, b[i:j]...)
			i = j - 1
		case '{', '[':
			if depth >= levels {
				// A deeper value is copied as it is, in one piece.
				j := valueEnd(b, i)
				out = append(out, b[i:j]...)
				i = j - 1
				continue
			}
			out = append(out, c)
			depth++
			// An empty container stays as it is: {} or [].
			if i+1 < len(b) && b[i+1] != '}' && b[i+1] != ']' {
				newline(depth)
			}
		case '}', ']':
			if i > 0 && b[i-1] != '{' && b[i-1] != '[' {
				newline(depth - 1)
			}
			depth--
			out = append(out, c)
		case ',':
			out = append(out, c)
			newline(depth)
		case ':':
			out = append(out, c, ' ')
		default:
			out = append(out, c)
		}
	}
	return out
}

// stringEnd returns the index after the JSON string starting at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the object or array starting at b[i].
func valueEnd(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			j = stringEnd(b, j) - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(b)
}
