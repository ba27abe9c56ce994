package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/swanmgr/swanmgr/model"
)

// The hashes the record keeps were made by writing each field into the
// hash; they are now made from one buffer. refHash is the way before,
// kept here to show that every hash reads the same (a changed hash would
// reload every connection at the next apply).
func refHash(s *Section, w io.Writer) {
	var buf []byte
	put := func(tag byte, v string) {
		buf = append(buf, tag)
		buf = strconv.AppendInt(buf, int64(len(v)), 10)
		buf = append(buf, ':')
		buf = append(buf, v...)
	}
	for _, it := range s.All() {
		buf = buf[:0]
		put('k', it.Key)
		switch {
		case it.Sec != nil:
			buf = append(buf, '{')
			w.Write(buf)
			refHash(it.Sec, w)
			w.Write([]byte{'}'})
			continue
		case len(it.Files()) > 0:
			for _, f := range it.Files() {
				sum := sha256.Sum256(f.Data)
				put('f', string(sum[:]))
			}
		case it.IsList:
			buf = append(buf, '[')
			for _, v := range it.List {
				put('l', v)
			}
			buf = append(buf, ']')
		default:
			put('v', it.Value)
		}
		w.Write(buf)
	}
}

func refConnHashes(c Conn) (hash, ike string, children map[string]string) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", c.Name)
	refHash(c.Body, h)
	hash = hex.EncodeToString(h.Sum(nil))[:32]
	h = sha256.New()
	for _, it := range c.Body.All() {
		if it.Key != "children" {
			refHash(NewSection([]Item{it}...), h)
		}
	}
	ike = hex.EncodeToString(h.Sum(nil))[:32]
	children = map[string]string{}
	if ch := c.Body.Subsection("children"); ch != nil {
		for _, it := range ch.All() {
			if it.Sec != nil {
				h := sha256.New()
				refHash(it.Sec, h)
				children[it.Key] = hex.EncodeToString(h.Sum(nil))[:32]
			}
		}
	}
	return hash, ike, children
}

// examplePolicies are the repository's example policies, validated (keys
// inline allowed), by path.
func examplePolicies(t *testing.T) map[string]*model.Assigned {
	t.Helper()
	examples, _ := filepath.Glob("../examples/*/*.toml")
	out := make(map[string]*model.Assigned, len(examples))
	for _, p := range examples {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := model.ParseValidate(p, data, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[p] = a
	}
	return out
}

func TestHashesAsBefore(t *testing.T) {
	n := 0
	for p, a := range examplePolicies(t) {
		for _, b := range []Backend{Kernel, LibIPsec} {
			res, err := Render(a, Options{Backend: b})
			if err != nil {
				continue
			}
			for _, c := range res.Conns {
				hash, ike, children := refConnHashes(c)
				if c.Hash() != hash || c.IKEHash() != ike {
					t.Errorf("%s %s %s: hashes %s %s, before %s %s", p, b, c.Name, c.Hash(), c.IKEHash(), hash, ike)
				}
				got := c.ChildHashes()
				if len(got) != len(children) {
					t.Errorf("%s %s %s: %d child hashes, before %d", p, b, c.Name, len(got), len(children))
				}
				for k, v := range children {
					if got[k] != v {
						t.Errorf("%s %s %s child %s: hash %s, before %s", p, b, c.Name, k, got[k], v)
					}
				}
				n++
			}
		}
	}
	// Files, empty lists and sections, and values that look like the
	// fields' framing.
	odd := NewSection([]Item{
		{Key: "f", ItemExtra: &ItemExtra{FileRefs: []FileRef{{Path: "a", Data: []byte("x")}, {Path: "b"}}}},
		{Key: "l", IsList: true},
		{Key: "l2", List: []string{"", "k1:x", "{"}, IsList: true},
		{Key: "s", Sec: &Section{}},
		{Key: "children", Sec: NewSection([]Item{{Key: "c1", Sec: NewSection([]Item{{Key: "v", Value: "}"}}...)}, {Key: "x", Value: "y"}}...)},
		{},
	}...)
	c := Conn{Name: "odd\nname", Body: odd}
	hash, ike, children := refConnHashes(c)
	if c.Hash() != hash || c.IKEHash() != ike || c.ChildHashes()["c1"] != children["c1"] {
		t.Errorf("odd section: hashes differ from before")
	}
	h := sha256.New()
	refHash(odd, h)
	if odd.Hash() != hex.EncodeToString(h.Sum(nil))[:32] {
		t.Errorf("odd section: Section.Hash differs from before")
	}
	if n < 10 {
		t.Fatalf("only %d connections compared", n)
	}
}
