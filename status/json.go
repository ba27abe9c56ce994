package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"sync"
)

// WriteJSON writes a view as one JSON document (docs/status-json.md). With
// compact it is one line (one object per line when watching); otherwise
// the document's top two levels are indented and every deeper value (an
// SA, an IKE_SA, a statistic) is one line of its own: readable, and far
// cheaper than indenting thousands of SAs field by field.
//
// The SA rows are encoded on every CPU and spliced into the rest of the
// document: a view is written once its SAs are known, so this is on the
// path an operator waits for.
func WriteJSON(w io.Writer, st *Status, compact bool) error {
	b, err := encode(st, !compact)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

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

// Where the rows go in the encoded document, compact and indented.
const (
	saKey         = `"security_associations":[]`
	saKeyIndented = `"security_associations": []`
)

// encode writes the document and a newline. The rows (the bulk of a big
// view) are encoded by appendSA on several CPUs into one buffer each, and
// the document assembled in one copy.
func encode(st *Status, pretty bool) ([]byte, error) {
	shell := *st
	shell.SAs = []SA{}
	head, err := marshalOne(&shell)
	if err != nil {
		return nil, err
	}
	key, sep, open, end := saKey, ",", "[", "]"
	if pretty {
		head = indentTop(head, 2)
		key, sep, open, end = saKeyIndented, ",\n    ", "[\n    ", "\n  ]"
	}
	at := bytes.Index(head, []byte(key))
	if at < 0 {
		return nil, errors.New("status: encoding the view: no place for the rows")
	}
	if len(st.SAs) == 0 {
		return append(head, '\n'), nil
	}
	parts := encodeRows(st.SAs, sep)
	n := len(head) + len(open) + len(end) + 1
	for _, p := range parts {
		n += len(p) + len(sep)
	}
	out := make([]byte, 0, n)
	out = append(out, head[:at+len(key)-2]...)
	out = append(out, open...)
	first := true
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		if !first {
			out = append(out, sep...)
		}
		out = append(out, p...)
		first = false
	}
	out = append(out, end...)
	out = append(out, head[at+len(key):]...)
	return append(out, '\n'), nil
}

// encodeRows encodes rows compactly (appendSA), separated by sep within
// each part, on several CPUs when there are many.
func encodeRows(rows []SA, sep string) [][]byte {
	workers := 1
	if len(rows) >= 256 {
		workers = min(runtime.GOMAXPROCS(0), 8)
	}
	per := (len(rows) + workers - 1) / workers
	parts := make([][]byte, workers)
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		lo, hi := k*per, min((k+1)*per, len(rows))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, (hi-lo)*1600)
			for i := lo; i < hi; i++ {
				if i > lo {
					buf = append(buf, sep...)
				}
				buf = appendSA(buf, &rows[i])
			}
			parts[k] = buf
		}()
	}
	wg.Wait()
	return parts
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
