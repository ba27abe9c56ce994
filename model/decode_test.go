package model

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// generated writes a policy of n rules shaped like the benchmark's, with
// the parts a chunk must carry: filter lists of two filters, rules with
// inline and [[...]] authentication, two policies, comments and blank
// lines, and an unknown and a miscased key in the middle.
func generated(n int) string {
	var b strings.Builder
	b.WriteString("# generated\nassign = \"Second\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n")
	b.WriteString("[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n\n")
	for i := range n {
		fmt.Fprintf(&b, "[[filter_list]]  # list %d\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.1.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = [\n    22 ]\n", i, i, i/256, i%256)
		if i == n/2 {
			b.WriteString("  colour = \"blue\"\n  Mirrored = true\n")
		}
		b.WriteString("  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.9.0.1\"\n\n")
	}
	for p, name := range []string{"First", "Second"} {
		fmt.Fprintf(&b, "[[policy]]\nname = %q\ndescription = \"policy %d\"\n", name, p)
		for i := range n {
			fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Peer %d in %s\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n", i, name, i)
			if i%2 == 0 {
				b.WriteString("  authentication = [ { method = \"psk\", secret_file = \"bench.psk\" } ]\n")
			} else {
				b.WriteString("    [[policy.rule.authentication]]\n    method = \"psk\"\n    secret_file = \"bench.psk\"\n")
			}
		}
	}
	return b.String()
}

// sameDecoded fails the test unless a and b decoded alike.
func sameDecoded(t *testing.T, what string, a, b *decoded) {
	t.Helper()
	if !reflect.DeepEqual(a.f, b.f) {
		t.Fatalf("%s: the pieces decode to another File than the whole", what)
	}
	keys := func(d *decoded) []string {
		var out []string
		for _, u := range d.undecoded {
			out = append(out, u.key.String()+" "+u.typ)
		}
		for _, m := range d.miscased {
			out = append(out, m.key.String()+" -> "+m.want)
		}
		slices.Sort(out)
		return out
	}
	if ka, kb := keys(a), keys(b); !slices.Equal(ka, kb) {
		t.Fatalf("%s: keys differ:\n whole  %q\n pieces %q", what, ka, kb)
	}
}

// decodeBoth decodes text whole and, cut at every header it can be cut
// at, in pieces; ok is false when it cannot be cut.
func decodeBoth(t *testing.T, text string) (whole, pieces *decoded, ok bool) {
	t.Helper()
	whole, werr := decodeWhole(text)
	head, chunks, split := splitText(text, 1)
	if !split {
		return whole, nil, false
	}
	pieces, joined := decodeChunks(text, head, chunks, nil)
	if !joined {
		return whole, nil, false
	}
	if werr != nil {
		t.Fatalf("the whole text does not decode (%v), its pieces do", werr)
	}
	// And with the clean pieces taken from a Reuse (read back from its
	// Bytes, as apply does), twice: the same result, and the results
	// handed out are not written into.
	if len(pieces.miscased) == 0 {
		r := NewReuse("test", nil)
		for round := range 3 {
			b, err := r.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if round > 0 {
				r = NewReuse("test", b)
			}
			again, joined := decodeChunks(text, head, chunks, r)
			if !joined {
				t.Fatalf("round %d: with a Reuse the pieces do not join", round)
			}
			sameDecoded(t, fmt.Sprintf("round %d with a Reuse", round), pieces, again)
		}
	}
	return whole, pieces, true
}

func TestChunksDecodeLikeTheWhole(t *testing.T) {
	text := generated(40)
	whole, pieces, ok := decodeBoth(t, text)
	if !ok {
		t.Fatal("the generated policy was not cut")
	}
	sameDecoded(t, "generated", whole, pieces)
	if len(whole.undecoded) == 0 || len(whole.miscased) == 0 {
		t.Fatalf("the unknown and the miscased key were not seen: %+v %+v", whole.undecoded, whole.miscased)
	}
	if n := len(whole.f.Policies[1].Rules); n != 40 {
		t.Fatalf("the second policy has %d rules", n)
	}

	// Every policy in the repository, where it can be cut.
	files := repoPolicies(t)
	cut := 0
	for p, text := range files {
		if whole, pieces, ok := decodeBoth(t, text); ok {
			cut++
			sameDecoded(t, p, whole, pieces)
		}
	}
	t.Logf("%d of %d policy files cut", cut, len(files))
	if len(files) < 20 || cut < len(files)/2 {
		t.Errorf("%d of %d policy files were cut", cut, len(files))
	}
}

// repoPolicies returns the examples' policies and the golden inputs of
// render/testdata (the text before the expected output), by path.
func repoPolicies(t testing.TB) map[string]string {
	out := map[string]string{}
	examples, _ := filepath.Glob("../examples/*/*.toml")
	goldens, _ := filepath.Glob("../render/testdata/*.txt")
	for _, p := range append(examples, goldens...) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text, _, _ := strings.Cut(string(data), "\n"+goldenSeparator+"\n")
		out[p] = text + "\n"
	}
	return out
}

// goldenSeparator is render's golden files' line between policy and output.
const goldenSeparator = "----------"

// Texts whose pieces could mean something else than the whole are never
// cut; each of these is a TOML error or a different File when cut.
func TestChunksRefused(t *testing.T) {
	base := generated(3)
	at := strings.Index(base, "[[filter_action]]")
	rule := strings.Index(base, "  [[policy.rule]]")
	for name, text := range map[string]string{
		"inline rules then headers": strings.Replace(base, "description = \"policy 0\"\n", "description = \"policy 0\"\nrule = []\n", 1),
		"dotted rule key":           strings.Replace(base, "description = \"policy 0\"\n", "description = \"policy 0\"\nrule.name = \"x\"\n", 1),
		"inline array in the head":  base[:at] + "policy = []\n" + base[at:],
		"array as a table":          base[:at] + "[policy]\nname = \"x\"\n" + base[at:],
		"table after the arrays":    base + "[endpoint]\nname = \"again\"\n",
		"other case":                strings.Replace(base, "[[policy]]", "[[Policy]]", 1),
		"rule before any policy":    base[:at] + base[rule:],
		"multi-line string":         strings.Replace(base, "description = \"policy 0\"", "description = \"\"\"\n[[policy]]\n\"\"\"", 1),
		"quoted key":                strings.Replace(base, "name = \"Peer 1\"", "\"name\" = \"Peer 1\"", 1),
	} {
		if _, _, ok := splitText(text, 1); ok {
			t.Errorf("%s: cut", name)
		}
	}
	// A header inside a multi-line array is not one: the piece before it
	// is unterminated and the text is decoded whole.
	tricky := strings.Replace(base, "destination_port = [\n    22 ]", "destination_port = [ 22,\n[[policy]]\n ]", 1)
	if head, chunks, ok := splitText(tricky, 1); ok {
		if _, joined := decodeChunks(tricky, head, chunks, nil); joined {
			t.Error("a text cut inside a multi-line array decoded")
		}
	}
	if _, err := decodeText(tricky, nil); err == nil {
		t.Error("the invalid text decoded")
	}
}

// decodeText cuts large texts, and parse gives the same File and problems
// either way.
func TestParseCutAndWhole(t *testing.T) {
	text := generated(600)
	if len(text) < chunkFrom {
		t.Fatalf("the generated policy is %d bytes, under the cutting size %d", len(text), chunkFrom)
	}
	if _, _, ok := splitText(text, chunkTarget); !ok {
		t.Fatal("not cut")
	}
	f1, ps1 := parse("big.toml", []byte(text))
	from := chunkFrom
	chunkFrom = len(text) + 1
	f2, ps2 := parse("big.toml", []byte(text))
	chunkFrom = from
	if f1 == nil || f2 == nil {
		t.Fatalf("parse: %v / %v", ps1, ps2)
	}
	f1.pos, f2.pos = nil, nil
	if !reflect.DeepEqual(f1, f2) {
		t.Error("cut and whole parse to different Files")
	}
	if ps1.Error() != ps2.Error() || len(ps1) != 2 {
		t.Errorf("problems cut:\n%v\nwhole:\n%v", ps1, ps2)
	}
}

func FuzzChunks(f *testing.F) {
	f.Add(generated(2))
	for _, text := range repoPolicies(f) {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 64<<10 || checkLimits("f.toml", []byte(text)) != nil {
			return
		}
		if whole, pieces, ok := decodeBoth(t, text); ok {
			// A key written in two spellings of one field: which the
			// decoder keeps is random even for the whole text (it walks a
			// map), and parse refuses such a file either way.
			if len(whole.miscased) > 0 || len(pieces.miscased) > 0 {
				return
			}
			sameDecoded(t, "fuzzed", whole, pieces)
		}
	})
}
