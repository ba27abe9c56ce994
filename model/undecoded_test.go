package model

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// knownKeys is File's fields as the decoder reads them, table by table:
// decodeWhole takes a text whose every key is one of them for a text
// with every key decoded.
func TestKnownKeysAreFilesFields(t *testing.T) {
	want := map[string][]string{}
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		var keys []string
		for i := range ty.NumField() {
			f := ty.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				t.Errorf("%s.%s has no toml key", ty, f.Name)
				continue
			}
			keys = append(keys, tag)
			sub := f.Type
			if sub.Kind() == reflect.Slice || sub.Kind() == reflect.Pointer {
				sub = sub.Elem()
			}
			// (A struct that reads itself from a string, Secret, is a
			// value.)
			if sub.Kind() == reflect.Struct && !reflect.PointerTo(sub).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
				walk(strings.TrimPrefix(path+"."+tag, "."), sub)
			}
		}
		want[path] = keys
	}
	walk("", reflect.TypeFor[File]())
	for path := range want {
		if _, ok := knownKeys[path]; !ok {
			t.Logf("File has table %q", path)
		}
	}
	if len(want) != len(knownKeys) {
		t.Errorf("knownKeys has %d tables, File %d", len(knownKeys), len(want))
	}
	for path, keys := range want {
		got := slices.Clone(knownKeys[path])
		slices.Sort(got)
		slices.Sort(keys)
		if !slices.Equal(got, keys) {
			t.Errorf("knownKeys[%q] = %v, File's fields there %v", path, got, keys)
		}
	}
}

// undecodedAsDecoder checks that decodeWhole's undecoded keys are the
// decoder's own (md.Undecoded), in its order, with their types.
func undecodedAsDecoder(t *testing.T, name, text string) {
	t.Helper()
	var f File
	md, err := toml.Decode(text, &f)
	d, derr := decodeWhole(text)
	if (err == nil) != (derr == nil) {
		t.Fatalf("%s: decoder %v, decodeWhole %v", name, err, derr)
	}
	if err != nil {
		return
	}
	var want []undecodedKey
	for _, k := range md.Undecoded() {
		want = append(want, undecodedKey{key: k, typ: md.Type(k...)})
	}
	if !reflect.DeepEqual(d.undecoded, want) {
		t.Errorf("%s: undecoded %v, the decoder's %v", name, d.undecoded, want)
	}
}

// The keys decodeWhole tells undecoded are the decoder's, whether it
// asks the decoder (a key it does not know as written) or not.
func TestUndecodedAsDecoder(t *testing.T) {
	texts := repoPolicies(t)
	texts["generated"] = generated(40)
	plain := plainPolicy(3)
	for name, add := range map[string]string{
		"unknown key":           "\n[endpoint]\nnickname = \"x\"\n",
		"miscased key":          "\n[[filter_action]]\nName = \"Other\"\n",
		"dotted quoted table":   "\n[\"policy.rule\"]\nname = \"x\"\n",
		"dotted quoted key":     "\n\"policy.rule\".name = \"x\"\n",
		"dotted inner key":      "\n[[policy]]\nname = \"P\"\n\"rule.name\" = \"x\"\n",
		"table under a leaf":    "\n[[filter_list]]\nname = \"T\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"any\"\n  protocol = { number = 6 }\n",
		"table in a leaf array": "\n[endpoint]\naddresses = [ { a = 1 } ]\n",
		"empty key":             "\n[endpoint]\n\"\" = 1\n",
		"unknown table":         "\n[extra]\nkey = 1\n[extra.deeper]\nx = 2\n",
	} {
		texts[name] = plain + add
	}
	for name, text := range texts {
		undecodedAsDecoder(t, name, text)
	}
	// And the ones with every key known skip the decoder's account.
	if d, err := decodeWhole(plain); err != nil || len(d.undecoded) != 0 {
		t.Fatalf("generated policy: %v, undecoded %v", err, d.undecoded)
	}
}

// plainPolicy is a policy of n rules with every key known, as the
// benchmark's.
func plainPolicy(n int) string {
	var b strings.Builder
	b.WriteString("assign = \"P\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\n\n")
	for i := range n {
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"L%d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.%d\"\n  protocol = \"tcp\"\n  destination_port = 22\n\n", i, i+1)
	}
	b.WriteString("[[policy]]\nname = \"P\"\n")
	for i := range n {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  filter_list = \"L%d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret = \"x\" } ]\n", i)
	}
	return b.String()
}

func FuzzUndecoded(f *testing.F) {
	f.Add(generated(2))
	f.Add(plainPolicy(2))
	for _, text := range repoPolicies(f) {
		f.Add(text)
	}
	f.Add("[\"policy.rule\"]\nname = \"x\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 64<<10 || checkLimits("f.toml", []byte(text)) != nil {
			return
		}
		defer func() { recover() }() // the decoder's panics are parse's to report
		undecodedAsDecoder(t, "fuzzed", text)
	})
}
