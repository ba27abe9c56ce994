package assign

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// exampleGuards are the guards of every example policy, for each backend.
func exampleGuards(t *testing.T) map[string]*guard.Ruleset {
	t.Helper()
	examples, _ := filepath.Glob("../examples/*/*.toml")
	out := map[string]*guard.Ruleset{}
	for _, p := range examples {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := model.ParseValidate(p, data, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, backend := range []render.Backend{render.Kernel, render.LibIPsec} {
			res, err := render.Render(a, render.Options{Backend: backend})
			if err != nil || res.Guard == nil {
				continue
			}
			out[p+" "+string(backend)] = res.Guard
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d example guards", len(out))
	}
	return out
}

// The guard's record, written by hand, is byte for byte what
// encoding/json writes: for every example policy's guard and for values
// with every kind of string encoding/json escapes, empty and missing
// lists, and an earlier Format.
func TestGuardJSONLikeEncodingJSON(t *testing.T) {
	odd := "plain \"q\" \\ <a&b> \x00\x01\x1f\x7f \b\f\n\r\t é \u2028\u2029 \xff\xfe𝄞 \xe2\x80 end"
	for what, rs := range map[string]*guard.Ruleset{
		"odd": {Format: 3, Backend: guard.Backend(odd), Rules: []guard.Rule{{Name: odd, Counter: odd, Verdict: guard.Verdict(odd)}, {}},
			Entries: []guard.Entry{{Family: 6, Shape: odd, Key: []string{odd, ""}, Verdict: guard.Verdict(odd), Counter: odd, Low: true}, {Key: []string{}}, {Family: -1}}},
		"format 0":    {Backend: "kernel", Rules: []guard.Rule{}, Entries: []guard.Entry{}},
		"empty":       {},
		"nil ruleset": nil,
	} {
		sameJSON(t, what, guardFile{rs}, rs)
	}
	for what, rs := range exampleGuards(t) {
		sameJSON(t, what, guardFile{rs}, rs)
	}
}

// sameGuardRead says a guard record reads the same with the fast reader
// as with encoding/json, and whether the fast reader took it.
func sameGuardRead(t *testing.T, what string, data []byte) bool {
	t.Helper()
	var want guard.Ruleset
	werr := json.Unmarshal(data, &want)
	fast, ok := readGuardFast(data)
	if !ok {
		return false
	}
	if werr != nil {
		t.Fatalf("%s: the fast reader took what encoding/json refuses (%v)", what, werr)
	}
	if !reflect.DeepEqual(*fast, want) {
		t.Fatalf("%s: the fast reader reads another guard:\nfast %+v\njson %+v", what, *fast, want)
	}
	return true
}

// Every guard record the writer writes reads back with the fast reader as
// with encoding/json; one spaced out, or with a key written twice or in
// another case, is left to encoding/json, and
// what decodeGuard makes of it is encoding/json's.
func TestGuardReadLikeEncodingJSON(t *testing.T) {
	for what, rs := range exampleGuards(t) {
		if !sameGuardRead(t, what, written(t, guardFile{rs})) {
			t.Errorf("%s: the fast reader left the guard's record to encoding/json", what)
		}
	}
	for what, rs := range map[string]*guard.Ruleset{
		"empty lists": {Format: 3, Backend: "kernel", Rules: []guard.Rule{}, Entries: []guard.Entry{{Key: []string{}}}},
		"nulls":       {},
		"shared":      {Entries: []guard.Entry{{Shape: "s", Key: []string{"6", "22"}, Verdict: "negotiate", Counter: "r-a"}, {Shape: "s", Key: []string{"6", "22"}, Verdict: "negotiate", Counter: "r-a"}}},
	} {
		if !sameGuardRead(t, what, written(t, guardFile{rs})) {
			t.Errorf("%s: the fast reader left it to encoding/json", what)
		}
	}
	// Escaped strings and invalid UTF-8 are read as encoding/json reads
	// them; an escaped string is not taken for an interned one it starts
	// like.
	for what, data := range map[string]string{
		"escaped":        `{"backend":"a\u003cb"}`,
		"escaped shared": `{"entries":[{"shape":"a"},{"shape":"a\"b"},{"shape":"a\\"},{"shape":"a\\\"b"}]}`,
		"invalid utf8":   "{\"backend\":\"\xff\"}",
	} {
		if !sameGuardRead(t, what, []byte(data)) {
			t.Errorf("%s: the fast reader left %q to encoding/json", what, data)
		}
	}
	for what, data := range map[string]string{
		"spaced":      `{"format": 3}`,
		"twice":       `{"format":3,"format":2}`,
		"other case":  `{"Format":3}`,
		"unknown key": `{"format":3,"x":1}`,
		"entry key":   `{"entries":[{"family":4,"ports":1}]}`,
		"float":       `{"format":3.0}`,
		"null string": `{"backend":null}`,
		"trailing":    `{"format":3}x`,
		"cut":         `{"format":3,"entries":[{"shape":"a"`,
	} {
		if sameGuardRead(t, what, []byte(data)) {
			t.Errorf("%s: the fast reader took %q", what, data)
		}
		var a, b guard.Ruleset
		errA, errB := decodeGuard([]byte(data), &a), json.Unmarshal([]byte(data), &b)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: decodeGuard gives %+v, %v; encoding/json %+v, %v", what, a, errA, b, errB)
		}
	}
}

// FuzzGuardRead: whatever the fast reader takes, encoding/json reads the
// same; and any string in a guard is written as encoding/json writes it.
func FuzzGuardRead(f *testing.F) {
	f.Add([]byte(`{"format":3,"backend":"kernel","rules":[{"name":"a","counter":"r-a","verdict":"block"}],"entries":[{"family":4,"shape":"s","key":["1","2"],"verdict":"block","counter":"r-a"},{"family":4,"shape":"s","key":null,"verdict":"pass","low":true}]}`))
	f.Add([]byte(`{"entries":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameGuardRead(t, "fuzzed", data)
		s := string(data)
		rs := &guard.Ruleset{Backend: guard.Backend(s), Rules: []guard.Rule{{Name: s}}, Entries: []guard.Entry{{Shape: s, Key: []string{s}, Counter: s}}}
		sameJSON(t, "fuzzed guard", guardFile{rs}, rs)
	})
}
