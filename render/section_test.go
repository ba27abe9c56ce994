package render

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Rendered settings are frozen (Section.Freeze): every way of reading
// them gives what the tree they were frozen from gave, for every example
// policy on both backends.
func TestFrozenAsTree(t *testing.T) {
	n := 0
	for p, a := range examplePolicies(t) {
		for _, b := range []Backend{Kernel, LibIPsec} {
			frozen, err := Render(a, Options{Backend: b})
			if err != nil {
				continue
			}
			noFreeze = true
			trees, err := Render(a, Options{Backend: b})
			noFreeze = false
			if err != nil {
				t.Fatalf("%s %s: %v", p, b, err)
			}
			for i, c := range frozen.Conns {
				where := p + " " + string(b) + " " + c.Name
				tc := trees.Conns[i]
				if tc.Body.packed != "" {
					t.Fatalf("%s: rendered frozen with noFreeze", where)
				}
				if c.Body.packed == "" && hasFiles(tc.Body) == false {
					t.Errorf("%s: not frozen", where)
				}
				if c.Hash() != tc.Hash() || c.IKEHash() != tc.IKEHash() || !reflect.DeepEqual(c.ChildHashes(), tc.ChildHashes()) {
					t.Errorf("%s: hashes differ from the tree's", where)
				}
				sameSection(t, where, c.Body, tc.Body)
				fm, err1 := ConnMessage(c)
				tm, err2 := ConnMessage(tc)
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: %v %v", where, err1, err2)
				}
				if !reflect.DeepEqual(fm, tm) {
					t.Errorf("%s: the VICI message differs from the tree's", where)
				}
				n++
			}
			var fs, ts strings.Builder
			if err := frozen.WriteSwanctl(&fs, WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := trees.WriteSwanctl(&ts, WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if fs.String() != ts.String() {
				t.Errorf("%s %s: swanctl.conf differs from the tree's", p, b)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d connections compared", n)
	}
}

func hasFiles(s *Section) bool {
	for _, it := range s.All() {
		if len(it.Files()) > 0 || it.Sec != nil && hasFiles(it.Sec) {
			return true
		}
	}
	return false
}

// sameSection compares a frozen section with its tree through every
// reader: All, Len, Get, Value, List, Files, Subsection, JSON.
func sameSection(t *testing.T, where string, f, tr *Section) {
	t.Helper()
	fa, ta := f.All(), tr.All()
	if f.Len() != len(ta) || len(fa) != len(ta) {
		t.Fatalf("%s: %d items (Len %d), the tree %d", where, len(fa), f.Len(), len(ta))
	}
	seen := map[string]bool{}
	for i := range ta {
		fi, ti := fa[i], ta[i]
		first := !seen[ti.Key] // by key, the first item of a key is read
		seen[ti.Key] = true
		w := where + "/" + ti.Key
		if fi.Key != ti.Key || fi.Value != ti.Value || !reflect.DeepEqual(fi.List, ti.List) || fi.IsList != ti.IsList ||
			fi.Comment() != ti.Comment() || !reflect.DeepEqual(fi.Files(), ti.Files()) || (fi.Sec == nil) != (ti.Sec == nil) {
			t.Errorf("%s: item %+v, the tree's %+v", w, fi, ti)
			continue
		}
		if !first {
			if ti.Sec != nil {
				sameSection(t, w, fi.Sec, ti.Sec)
			}
			continue
		}
		if f.Value(ti.Key) != tr.Value(ti.Key) || !reflect.DeepEqual(f.List(ti.Key), tr.List(ti.Key)) ||
			!reflect.DeepEqual(f.Files(ti.Key), tr.Files(ti.Key)) || (f.Subsection(ti.Key) == nil) != (tr.Subsection(ti.Key) == nil) {
			t.Errorf("%s: read by key differently", w)
		}
		if g := f.Get(ti.Key); g == nil || g.Key != ti.Key {
			t.Errorf("%s: Get gives %v", w, g)
		}
		if ti.Sec != nil {
			sameSection(t, w, fi.Sec, ti.Sec)
			sameSection(t, w, f.Subsection(ti.Key), ti.Sec)
		}
	}
	if f.Get("no such key") != nil || f.Value("no such key") != "" || f.List("no such key") != nil || f.Subsection("no such key") != nil {
		t.Errorf("%s: a key it does not have is found", where)
	}
	fj, _ := json.Marshal(f)
	tj, _ := json.Marshal(tr)
	if string(fj) != string(tj) {
		t.Errorf("%s: JSON\n%s\nthe tree's\n%s", where, fj, tj)
	}
}

// Freeze keeps exactly what the tree held, whatever the strings (long
// ones take several bytes of length), or leaves the tree as it was.
func FuzzFreeze(f *testing.F) {
	f.Add("key", "value", "a", 2, false)
	f.Add(strings.Repeat("k", 300), "", "{}[]:\x00\xff", 0, true)
	f.Fuzz(func(t *testing.T, key, value, elem string, n int, note bool) {
		n = n % 4
		if n < 0 {
			n = -n
		}
		build := func() *Section {
			s := &Section{}
			s.Set(key, value)
			var list []string
			for range n {
				list = append(list, elem)
			}
			s.SetList(key+"l", list...)
			sub := s.Sub(elem, map[bool]string{true: value}[note])
			sub.Set(value, key)
			sub.Sub("empty", "")
			sub.SetList("one", elem)
			s.Sub(strings.Repeat(elem, 200), "").Set(key, strings.Repeat(value, 150))
			return s
		}
		tree, frozen := build(), build()
		frozen.Freeze()
		if frozen.packed == "" {
			t.Fatal("not frozen")
		}
		sameSection(t, "fuzz", frozen, tree)
		if frozen.Hash() != tree.Hash() {
			t.Fatal("hash differs")
		}
		if f, tr := appendSection(nil, frozen, 1), appendSection(nil, tree, 1); string(f) != string(tr) {
			t.Fatalf("swanctl.conf of the frozen section:\n%s\nof the tree:\n%s", f, tr)
		}
		// Changed after freezing: a tree again, with the change.
		frozen.Set("after", "x")
		tree.Set("after", "x")
		sameSection(t, "fuzz changed", frozen, tree)
	})
}

// A subsection a frozen section gives is a copy: changing it panics
// instead of being lost; the frozen section itself can still be changed,
// and through edit its subsections too.
func TestFrozenCopiesRefuseChanges(t *testing.T) {
	s := &Section{}
	s.Sub("children", "").Sub("c1", "").Set("mode", "tunnel")
	s.Freeze()
	for name, change := range map[string]func(){
		"Subsection": func() { s.Subsection("children").Set("x", "y") },
		"Get":        func() { s.Get("children").Sec.Sub("c2", "") },
		"All":        func() { s.All()[0].Sec.Add(Item{Key: "x"}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("a change through %s went to a copy without a panic", name)
				}
			}()
			change()
		}()
	}
	s.edit("children").Sub("c2", "").Set("mode", "transport")
	if s.Child("c2").Value("mode") != "transport" || s.Child("c1").Value("mode") != "tunnel" {
		t.Fatalf("changed through edit: %s", mustJSON(t, s))
	}
}

// An empty subsection that is not nil (a list of no items) stays a tree:
// the frozen form would give it back nil.
func TestEmptySubsectionNotFrozen(t *testing.T) {
	s := &Section{}
	s.subCap("children", "", 4)
	before := mustJSON(t, s)
	s.Freeze()
	if s.packed != "" || mustJSON(t, s) != before {
		t.Fatalf("frozen to %s, was %s", mustJSON(t, s), before)
	}
}

func mustJSON(t *testing.T, s *Section) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
