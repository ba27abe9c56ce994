package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
)

func encodingJSON(t *testing.T, v any, html bool) []byte {
	t.Helper()
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(html)
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func same(t *testing.T, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		if got, want := AppendString(nil, s, html), encodingJSON(t, s, html); !bytes.Equal(got, want) {
			t.Fatalf("html %v: %q written %s, encoding/json %s", html, s, got, want)
		}
		ss := []string{s, "", s}
		if got, want := AppendStrings(nil, ss, html), encodingJSON(t, ss, html); !bytes.Equal(got, want) {
			t.Fatalf("html %v: %q written %s, encoding/json %s", html, ss, got, want)
		}
	}
}

// Every byte, and strings of every kind encoding/json escapes, are
// written as encoding/json writes them, with and without HTML escaping.
func TestLikeEncodingJSON(t *testing.T) {
	for c := 0; c < 256; c++ {
		same(t, "a"+string([]byte{byte(c)})+"z")
	}
	same(t, "plain \"q\" \\ <a&b> \x00\x1f\x7f \b\f\n\r\t é \u2028\u2029 \xff\xfe𝄞 \xe2\x80 end")
	if got := AppendStrings(nil, nil, true); string(got) != "null" {
		t.Fatalf("nil slice: %s", got)
	}
}

func FuzzLikeEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "<>&", "\u2028", "\xff", "\xed\xa0\x80", "é𝄞"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { same(t, s) })
}
