package model

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sameFile says whether two parses decoded the same policy, file names and
// lines included.
func sameFile(t *testing.T, what string, a, b *File) {
	t.Helper()
	if !reflect.DeepEqual(a.FilterLists, b.FilterLists) || !reflect.DeepEqual(a.FilterActions, b.FilterActions) ||
		!reflect.DeepEqual(a.Policies, b.Policies) || a.Assign != b.Assign || !reflect.DeepEqual(a.Endpoint, b.Endpoint) ||
		a.Path != b.Path || !reflect.DeepEqual(a.Files(), b.Files()) {
		t.Fatalf("%s: parsing with reused files gives another policy", what)
	}
	// Each file's key positions, taken or scanned: its headers, and the
	// line of every key the full scan finds (what messages name).
	if (a.src == nil) != (b.src == nil) || (a.src != nil && len(a.src.members) != len(b.src.members)) {
		t.Fatalf("%s: parsing with reused files gives other files", what)
	}
	if a.src != nil {
		for k, m := range a.src.members {
			n := b.src.members[k]
			if !reflect.DeepEqual(m.pos.headers, n.pos.headers) {
				t.Fatalf("%s: %s: headers at %v, with reused files %v", what, m.path, m.pos.headers, n.pos.headers)
			}
			for path, l := range m.pos.keys().at {
				if got := n.pos.line(path); got != l || a.line(path) != b.line(path) {
					t.Fatalf("%s: %s: %s at line %d, with reused files %d", what, m.path, path, l, got)
				}
			}
		}
	}
	for line := 1; line < 400; line++ {
		fa, la := a.Locate(line)
		fb, lb := b.Locate(line)
		if fa != fb || la != lb {
			t.Fatalf("%s: line %d is %s:%d, with reused files %s:%d", what, line, fa, la, fb, lb)
		}
	}
}

// problemText is what a parse and validation said, as text.
func problemText(warns []Problem, err error) string {
	var b strings.Builder
	for _, w := range warns {
		b.WriteString("warning " + w.Error() + "\n")
	}
	if err != nil {
		b.WriteString(err.Error())
	}
	return b.String()
}

// Every repository policy cut into a folder parses and validates the same
// with its files taken from a Reuse (written and read back, as apply does
// through its state folder, and then kept in memory, as the agent does) as
// when every file is decoded: the same policy, lines, problems and
// assignment; and the files taken are all those that could be kept.
func TestReuseLikeDecoding(t *testing.T) {
	o := ValidateOptions{InsecureSecrets: true}
	folders, taken := 0, 0
	for p, text := range repoPolicies(t) {
		files, ok := cutIntoFolder(t, text)
		if !ok {
			continue
		}
		folders++
		dir := filepath.Dir(p)
		bundle := makeBundle(files)
		fresh, freshPs := parse(dir, bundle)
		wantA, wantW, wantErr := ParseValidate(dir, bundle, o)

		first := NewReuse("swanmgr test", nil)
		if f, ps := parseWith(dir, bundle, first); fmt.Sprint(ps) != fmt.Sprint(freshPs) || (f == nil) != (fresh == nil) {
			t.Fatalf("%s: the first parse with a Reuse says %v, without %v", p, ps, freshPs)
		}
		_, kept := first.Counts()
		data, err := first.Bytes()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		again := NewReuse("swanmgr test", data)
		for round := 1; round <= 2; round++ {
			what := fmt.Sprintf("%s (round %d)", p, round)
			o.Reuse = again
			a, w, err := ParseValidate(dir, bundle, o)
			o.Reuse = nil
			if problemText(w, err) != problemText(wantW, wantErr) {
				t.Fatalf("%s: with reused files:\n%s\nwithout:\n%s", what, problemText(w, err), problemText(wantW, wantErr))
			}
			if (a == nil) != (wantA == nil) {
				t.Fatalf("%s: valid %v with reused files, %v without", what, a != nil, wantA != nil)
			}
			if a != nil && (!reflect.DeepEqual(a.Rules, wantA.Rules) || !reflect.DeepEqual(a.Endpoint, wantA.Endpoint) || !reflect.DeepEqual(*a.Policy, *wantA.Policy)) {
				t.Fatalf("%s: the assignment differs with reused files", what)
			}
			if fresh != nil {
				f, ps := parseWith(dir, bundle, again)
				if len(ps) != len(freshPs) {
					t.Fatalf("%s: %v with reused files, %v without", what, ps, freshPs)
				}
				sameFile(t, what, fresh, f)
			}
			n, decoded := again.Counts()
			if n != 2*kept || decoded != 0 {
				t.Fatalf("%s: %d files taken and %d decoded; %d were kept", what, n, decoded, kept)
			}
			if again.Changed() {
				t.Fatalf("%s: nothing changed, but Changed says so", what)
			}
			again.Prune()
		}
		taken += kept
	}
	if folders < 25 || taken < 120 {
		t.Fatalf("only %d folders, %d files reused", folders, taken)
	}
	t.Logf("%d folders, %d files reused", folders, taken)
}

// An edited file is decoded again, a removed one's result is dropped, and
// a file with an inline secret is never kept: its secret is not in what
// Bytes writes, whose result is refused by another program.
func TestReuseKeepsWhatItShould(t *testing.T) {
	base := "assign = \"P\"\n[endpoint]\naddresses = [\"192.0.2.1\"]\n[[filter_action]]\nname = \"E\"\naction = \"negotiate\"\n"
	peer := func(i, port int) bundleFile {
		return bundleFile{name: fmt.Sprintf("peer-%d.toml", i), data: []byte(fmt.Sprintf(
			"[[filter_list]]\nname = \"L%d\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.%d\"\nprotocol = \"tcp\"\ndestination_port = %d\n"+
				"[[policy]]\nname = \"P\"\n[[policy.rule]]\nfilter_list = \"L%d\"\nfilter_action = \"E\"\nauthentication = [{method = \"psk\", secret_file = \"/k\"}]\n", i, 10+i, port, i))}
	}
	secret := bundleFile{name: "zz-secret.toml", data: []byte("[[filter_list]]\nname = \"S\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.99\"\n" +
		"[[policy]]\nname = \"P\"\n[[policy.rule]]\nfilter_list = \"S\"\nfilter_action = \"E\"\nauthentication = [{method = \"psk\", secret = \"inline-Sekr1t-value-never-kept\"}]\n")}
	files := []bundleFile{{name: "00-base.toml", data: []byte(base)}, peer(1, 22), peer(2, 22), peer(3, 22), secret}
	r := NewReuse("prog", nil)
	if _, err := ParseWith("/p", makeBundle(files), r); err != nil {
		t.Fatal(err)
	}
	if taken, decoded := r.Counts(); taken != 0 || decoded != 4 {
		t.Fatalf("first parse: %d taken, %d decoded and kept; want 0 and 4 (not the file with a secret)", taken, decoded)
	}
	data, err := r.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("Sekr1t")) {
		t.Fatal("the inline secret is in what Reuse writes")
	}

	// Peer 2 edited, peer 3 gone.
	r = NewReuse("prog", data)
	edited := []bundleFile{files[0], peer(1, 22), peer(2, 2222), secret}
	f, err := ParseWith("/p", makeBundle(edited), r)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.FilterLists[1].Filters[0].DestinationPort; got != int64(2222) {
		t.Fatalf("the edited file reads port %v", got)
	}
	if taken, decoded := r.Counts(); taken != 2 || decoded != 1 || !r.Changed() {
		t.Fatalf("after an edit: %d taken, %d decoded, changed %v; want 2, 1, true", taken, decoded, r.Changed())
	}
	data, err = r.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// Read back from what Bytes wrote, as apply does; and kept in memory
	// and pruned after the parse, as the agent does.
	fromDisk := NewReuse("prog", data)
	r.Prune()
	for _, r := range []*Reuse{fromDisk, r} {
		if _, err := ParseWith("/p", makeBundle(edited), r); err != nil {
			t.Fatal(err)
		}
		if taken, decoded := r.Counts(); taken != 3 || decoded != 0 || r.Changed() {
			t.Fatalf("peer 3's result should be gone: %d taken, %d decoded, changed %v", taken, decoded, r.Changed())
		}
	}
	// Peer 3 comes back: decoded again.
	if _, err := ParseWith("/p", makeBundle(append(edited, peer(3, 22))), r); err != nil {
		t.Fatal(err)
	}
	if _, decoded := r.Counts(); decoded != 1 {
		t.Fatalf("the returning file: %d decoded, want 1", decoded)
	}

	for _, other := range []*Reuse{NewReuse("another program", data), NewReuse("prog", []byte("not what Bytes writes")), NewReuse("prog", data[:len(data)/2])} {
		if _, err := ParseWith("/p", makeBundle(edited), other); err != nil {
			t.Fatal(err)
		}
		if taken, decoded := other.Counts(); taken != 0 || decoded != 3 {
			t.Fatalf("another program's or damaged data: %d taken, %d decoded; want 0, 3", taken, decoded)
		}
	}

	// A set Secret is refused by the encoding, whatever asks.
	withSecret := &File{Policies: []Policy{{Rules: []Rule{{Authentication: []Auth{{Secret: NewSecret("Sekr1t")}}}}}}}
	if b, err := encodeFile(nil, withSecret); err == nil || bytes.Contains(b, []byte("Sekr1t")) {
		t.Fatalf("a secret encodes: %v", err)
	}
}

// A file whose decoding says something (an unknown key) or that holds a
// value Reuse does not keep as it is (a float where a port goes) is not
// kept: its problems come from decoding it, every time.
func TestReuseSkipsUnclean(t *testing.T) {
	files := []bundleFile{
		{name: "a.toml", data: []byte("assign = \"P\"\n[endpoint]\naddresses = [\"192.0.2.1\"]\nnope = 1\n")},
		{name: "b.toml", data: []byte("[[filter_list]]\nname = \"L\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.9\"\ndestination_port = 2.5\n")},
	}
	r := NewReuse("prog", nil)
	for i := 0; i < 2; i++ {
		_, err := ParseWith("/p", makeBundle(files), r)
		if err == nil || !strings.Contains(err.Error(), "/p/a.toml:4: unknown key endpoint.nope") {
			t.Fatalf("parse %d: %v", i+1, err)
		}
		if taken, decoded := r.Counts(); taken != 0 || decoded != 0 {
			t.Fatalf("parse %d: %d taken, %d kept; want none", i+1, taken, decoded)
		}
	}
}

// FuzzReuse: any text that parses as one file of a folder parses the same
// when its decoded result comes back from what Reuse writes.
func FuzzReuse(f *testing.F) {
	for _, text := range repoPolicies(f) {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 64<<10 || strings.IndexByte(text, 0) >= 0 {
			return
		}
		files := []bundleFile{{name: "a.toml", data: []byte(text)}}
		bundle := makeBundle(files)
		fresh, freshPs := parse("/p", bundle)
		r := NewReuse("prog", nil)
		parseWith("/p", bundle, r)
		data, err := r.Bytes()
		if err != nil {
			t.Fatalf("Bytes: %v", err)
		}
		again := NewReuse("prog", data)
		f2, ps := parseWith("/p", bundle, again)
		if (f2 == nil) != (fresh == nil) {
			t.Fatalf("with reuse %v, without %v", ps, freshPs)
		}
		if fresh == nil || len(freshPs) > 0 {
			// Not decoded cleanly, so not kept: both were the decoder's
			// own answer, and with several mistakes (or a key in two
			// spellings) which one it names is random (it walks a map;
			// see FuzzChunks).
			if taken, _ := again.Counts(); taken != 0 {
				t.Fatalf("a text that does not decode was taken from the reuse")
			}
			return
		}
		if fmt.Sprint(ps) != fmt.Sprint(freshPs) {
			t.Fatalf("with reuse %v, without %v", ps, freshPs)
		}
		sameFile(t, "fuzzed", fresh, f2)
	})
}

// benchLike is a policy of n rules as the benchmark writes them (one peer,
// one filter, a key file per rule): every chunk decodes cleanly.
func benchLike(n int, port func(i int) int, skip int) string {
	var b strings.Builder
	b.WriteString("assign = \"Generated\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n\n")
	for i := range n {
		if i == skip {
			continue
		}
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.1.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = %d\n\n", i, i/256, i%256, port(i))
	}
	b.WriteString("[[policy]]\nname = \"Generated\"\n")
	for i := range n {
		if i == skip {
			continue
		}
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Peer %d\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"bench.psk\" } ]\n", i, i)
	}
	return b.String()
}

// A large single file keeps its chunks' decoded results: after one rule's
// port changes, or one rule goes, only the chunks around the change are
// decoded again (the cuts are chosen by the text around them, so they do
// not move when text before them grows or shrinks), and the parse is the
// one decoding everything gives, lines and problems included. Parsing
// twice from one Reuse checks that no parse writes into the results it
// was handed (a policy's rules continued in the next chunk are appended).
func TestReuseChunksOfALargeFile(t *testing.T) {
	const n = 3000
	same := func(int) int { return 22 }
	texts := []struct {
		what    string
		text    string
		decoded int // at most this many chunks decoded again
	}{
		{"the file", benchLike(n, same, -1), -1},
		{"one port changed", benchLike(n, func(i int) int { return map[bool]int{true: 2222, false: 22}[i == n/3] }, -1), 2},
		{"one rule removed", benchLike(n, same, n/2), 3},
		{"the file again", benchLike(n, same, -1), 4},
	}
	r := NewReuse("test", nil)
	var earlier, earlierWant *File // the last text's parse, still in use
	for _, tc := range texts {
		if len(tc.text) < chunkFrom {
			t.Fatalf("%d rules are %d bytes, under the cutting size", n, len(tc.text))
		}
		_, chunks, ok := splitText(tc.text, chunkTarget)
		if !ok || len(chunks) < 5 {
			t.Fatalf("%s: cut into %d chunks", tc.what, len(chunks))
		}
		want, wantPs := parse("big.toml", []byte(tc.text))
		for round := range 3 {
			if round < 2 {
				// Read back, as apply does; the third round parses from
				// the same Reuse in memory, as the agent does.
				r = NewReuse("test", mustBytes(t, r))
			} else {
				r.Prune()
			}
			got, ps := parseWith("big.toml", []byte(tc.text), r)
			if got == nil || want == nil || ps.Error() != wantPs.Error() {
				t.Fatalf("%s: problems %v, decoding all gives %v", tc.what, ps, wantPs)
			}
			sameFile(t, tc.what, want, got)
			taken, decoded := r.Counts()
			if taken+decoded != len(chunks) {
				t.Fatalf("%s: %d chunks taken and %d decoded, of %d", tc.what, taken, decoded, len(chunks))
			}
			if round == 0 && tc.decoded >= 0 && decoded > tc.decoded {
				t.Errorf("%s: %d of %d chunks decoded again, want at most %d", tc.what, decoded, len(chunks), tc.decoded)
			}
			if round > 0 && decoded != 0 {
				t.Errorf("%s, parsed again: %d chunks decoded, want none", tc.what, decoded)
			}
			if earlier != nil {
				sameFile(t, "the parse before "+tc.what+", after it", earlierWant, earlier)
			}
			if round == 2 {
				earlier, earlierWant = got, want
			}
		}
	}
}

func mustBytes(t *testing.T, r *Reuse) []byte {
	t.Helper()
	b, err := r.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bytes allocates about what it returns: for files decoded now, whose
// form is not known before, it took 64 KB each once, which for a cold
// folder of 5,000 peer files was 320 MB.
func TestReuseBytesAtItsSize(t *testing.T) {
	text := benchLike(3000, func(int) int { return 22 }, -1)
	for round := range 2 {
		r := NewReuse("test", nil)
		if round == 1 {
			r = NewReuse("test", mustBytes(t, r))
		}
		if _, ps := parseWith("big.toml", []byte(text), r); len(ps) > 0 {
			t.Fatal(ps)
		}
		b := mustBytes(t, r)
		if cap(b) > 2*len(b)+4096 {
			t.Fatalf("round %d: %d bytes in a buffer of %d", round, len(b), cap(b))
		}
	}
}

// A file's result that does not decode when it is first taken (its
// encoding damaged, its framing whole) is as none: that file is decoded
// again, kept in its place, and written again by Bytes.
func TestReuseDamagedFileDecodedAgain(t *testing.T) {
	var files []bundleFile
	for i := range 3 {
		files = append(files, bundleFile{name: fmt.Sprintf("peer-%d.toml", i), data: []byte(fmt.Sprintf(
			"[[filter_list]]\nname = \"L%d\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.%d\"\n", i, 10+i))})
	}
	bundle := makeBundle(files)
	fresh, _ := parse("/p", bundle)
	first := NewReuse("prog", nil)
	parseWith("/p", bundle, first)
	data := mustBytes(t, first)

	// The first entry's encoding, after the magic, the salt, the count,
	// its key and its length, is overwritten.
	at := len(reuseMagic) + 32 + 1 + 32 + 1
	damaged := bytes.Clone(data)
	for i := at; i < at+8; i++ {
		damaged[i] = 0xff
	}
	r := NewReuse("prog", damaged)
	f, ps := parseWith("/p", bundle, r)
	if f == nil || len(ps) != 0 {
		t.Fatalf("parse with a damaged entry: %v", ps)
	}
	sameFile(t, "damaged entry", fresh, f)
	if taken, decoded := r.Counts(); taken != 2 || decoded != 1 {
		t.Fatalf("%d taken, %d decoded; want 2, 1", taken, decoded)
	}
	if !r.Changed() {
		t.Fatal("a damaged entry replaced, but Changed says nothing changed")
	}
	again := NewReuse("prog", mustBytes(t, r))
	parseWith("/p", bundle, again)
	if taken, decoded := again.Counts(); taken != 3 || decoded != 0 {
		t.Fatalf("after the rewrite: %d taken, %d decoded; want 3, 0", taken, decoded)
	}
}
