package render_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// rendered is what a Render gives, written out whole: the swanctl.conf
// text with secrets, and every connection's origins, children, comment
// and hashes, the secrets' connections and the warnings.
func rendered(t *testing.T, res *render.Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := res.WriteSwanctl(&b, render.WriteOptions{ShowSecrets: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Conns {
		fmt.Fprintf(&b, "conn %s %+v %+v %q %s %s %v\n", c.Name, c.Origin, c.Children, c.Comment, c.Hash(), c.IKEHash(), c.ChildHashes())
	}
	for _, s := range res.Secrets {
		fmt.Fprintf(&b, "secret %s %v %v %q\n", s.Name, s.Owners, s.Conns, s.Data.Reveal())
	}
	for _, k := range res.Keys {
		fmt.Fprintf(&b, "key %s %s\n", k.Name, k.Path)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(&b, "warning %s\n", w.Error())
	}
	if res.Guard != nil {
		fmt.Fprintf(&b, "guard %s\n", res.Guard.Hash())
	}
	return b.String()
}

// assigned validates a policy file or folder.
func assigned(t testing.TB, path string) (*model.Assigned, error) {
	t.Helper()
	data, err := model.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.ParseValidate(path, data, model.ValidateOptions{InsecureSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }})
	return a, err
}

// genAssigned validates genPolicy(n, edit), written to a file of its own.
func genAssigned(tb testing.TB, n int, edit func(string) string) *model.Assigned {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "p.toml")
	if err := os.WriteFile(p, []byte(genPolicy(n, edit)), 0o600); err != nil {
		tb.Fatal(err)
	}
	a, err := assigned(tb, p)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// keptForm renders a with an empty Prior of program and returns the
// result and the form it keeps.
func keptForm(tb testing.TB, a *model.Assigned, program string) (*render.Result, []byte) {
	tb.Helper()
	res, err := render.Render(a, render.Options{Prior: render.NewPrior(program, nil)})
	if err != nil {
		tb.Fatal(err)
	}
	return res, res.PriorBytes(program)
}

// TestPriorAsRender renders every golden policy and example on both
// backends, then again with a Prior of the first: the same result, with
// every connection the Prior holds taken from it.
func TestPriorAsRender(t *testing.T) {
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*", "*.toml"))
	if len(goldens) == 0 || len(examples) == 0 {
		t.Fatal("no policies")
	}
	took := 0
	try := func(t *testing.T, a *model.Assigned, b render.Backend) {
		res, err := render.Render(a, render.Options{Backend: b, Prior: render.NewPrior("test", nil)})
		if err != nil {
			return // errors: TestPriorErrorsAsRender
		}
		want := rendered(t, res)
		data := res.PriorBytes("test")
		p := render.NewPrior("test", data)
		held := p.Len()
		again, err := render.Render(a, render.Options{Backend: b, Prior: p})
		if err != nil {
			t.Fatalf("with the prior: %v", err)
		}
		if got := rendered(t, again); got != want {
			t.Fatalf("with the prior:\n%s\nwithout:\n%s", got, want)
		}
		if p.Reused() != held || p.Len() != 0 {
			t.Errorf("took %d of the %d connections the prior holds (%d left)", p.Reused(), held, p.Len())
		}
		if d := again.PriorBytes("test"); !bytes.Equal(d, data) {
			t.Errorf("the result with the prior keeps another form (%d bytes, %d before)", len(d), len(data))
		}
		took += p.Reused()
	}
	for _, path := range goldens {
		g := readGolden(t, path)
		f, err := model.Parse(g.policy, g.data)
		if err != nil {
			continue
		}
		a, _, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }})
		if err != nil {
			continue
		}
		t.Run(filepath.Base(path), func(t *testing.T) { try(t, a, g.backend) })
	}
	for _, path := range examples {
		for _, b := range []render.Backend{render.Kernel, render.LibIPsec} {
			a, err := assigned(t, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path)+"/"+string(b), func(t *testing.T) { try(t, a, b) })
		}
	}
	if took == 0 {
		t.Fatal("no connection was taken from a prior")
	}
}

// genPolicy is a policy of n rules, each to its own peer but rules 3 and
// 4 (one peer, two rules) and rule 5 (two peers); edit changes its text.
func genPolicy(n int, edit func(string) string) string {
	var b strings.Builder
	b.WriteString("assign = \"Gen\"\n\n[endpoint]\naddresses = [\"172.16.98.231\", \"fd00::1\"]\n\n")
	b.WriteString("[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n\n")
	b.WriteString("[[filter_action]]\nname = \"Strong\"\naction = \"negotiate\"\nsecurity = \"custom\"\nesp_encryption = [\"aes256gcm16\"]\nrekey_seconds = 3600\n\n")
	for i := range n {
		dst := fmt.Sprintf("\"10.0.%d.%d\"", i/250, 1+i%250)
		if i == 4 {
			dst = "\"10.0.0.4\"" // rule 3's peer
		}
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"List %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = %s\n  protocol = \"tcp\"\n  destination_port = %d\n\n", i, dst, 22+i)
		if i == 5 {
			b.WriteString("  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.9.9.9\"\n  protocol = \"udp\"\n\n")
		}
	}
	b.WriteString("[[policy]]\nname = \"Gen\"\n")
	for i := range n {
		action := "Encrypt"
		if i%7 == 6 {
			action = "Strong"
		}
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Rule %d\"\n  filter_list = \"List %d\"\n  filter_action = %q\n  authentication = [ { method = \"psk\", secret = \"lab-only-key-%d\" } ]\n", i, i, action, i/5)
	}
	s := b.String()
	if edit != nil {
		s = edit(s)
	}
	return s
}

// TestPriorAfterChanges renders a policy, then changed ones with its
// Prior: each the same as rendered without one, and taking from the
// Prior what the change did not touch.
func TestPriorAfterChanges(t *testing.T) {
	const n = 40
	first, data := keptForm(t, genAssigned(t, n, nil), "test")
	conns := len(first.Conns)
	for _, c := range []struct {
		name string
		edit func(string) string
		// taken is how many connections come from the prior (-1: any)
		taken   int
		backend render.Backend
	}{
		{"unchanged", nil, conns, ""},
		{"one port", func(s string) string {
			return strings.Replace(s, "destination_port = 30\n", "destination_port = 3000\n", 1)
		}, conns - 1, ""},
		{"second rule to a peer", func(s string) string {
			return strings.Replace(s, "destination_port = 26\n", "destination_port = 2600\n", 1)
		}, conns - 1, ""},
		{"a rule renamed", func(s string) string { return strings.Replace(s, "name = \"Rule 9\"\n", "name = \"Rule nine\"\n", 1) }, conns - 1, ""},
		{"a rule's key", func(s string) string {
			return strings.Replace(s, "secret = \"lab-only-key-3\"", "secret = \"lab-only-key-x\"", 1)
		}, conns, ""},
		{"a filter action", func(s string) string { return strings.Replace(s, "rekey_seconds = 3600", "rekey_seconds = 7200", 1) }, conns - n/7, ""},
		{"the endpoint", func(s string) string { return strings.Replace(s, "\"fd00::1\"", "\"fd00::2\"", 1) }, 0, ""},
		{"the endpoint's id", func(s string) string {
			return strings.Replace(s, "[endpoint]\n", "[endpoint]\nid = \"alice.example\"\n", 1)
		}, 0, ""},
		{"the policy's name", func(s string) string {
			return strings.Replace(strings.Replace(s, "name = \"Gen\"", "name = \"Other\"", 1), "assign = \"Gen\"", "assign = \"Other\"", 1)
		}, 0, ""},
		{"a line above", func(s string) string { return "# a comment\n" + s }, 0, ""},
		{"a rule off", func(s string) string {
			return strings.Replace(s, "name = \"Rule 12\"\n", "name = \"Rule 12\"\n  disabled = true\n", 1)
		}, -1, ""},
		{"the backend", nil, 0, render.LibIPsec},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := genAssigned(t, n, c.edit)
			want, err := render.Render(a, render.Options{Backend: c.backend})
			if err != nil {
				t.Fatal(err)
			}
			p := render.NewPrior("test", data)
			got, err := render.Render(a, render.Options{Backend: c.backend, Prior: p})
			if err != nil {
				t.Fatal(err)
			}
			if g, w := rendered(t, got), rendered(t, want); g != w {
				t.Fatalf("with the prior:\n%s\nwithout:\n%s", g, w)
			}
			if c.taken >= 0 && p.Reused() != c.taken {
				t.Errorf("took %d connections of %d from the prior, want %d", p.Reused(), len(got.Conns), c.taken)
			}
		})
	}
}

// TestPriorInFolder: a folder's connections keep the file and line of
// their rules, taken or made, when files before them change.
func TestPriorInFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("00-base.toml", "assign = \"Gen\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\n")
	peer := func(i int, extra string) {
		write(fmt.Sprintf("10-peer%d.toml", i), fmt.Sprintf("%s[[filter_list]]\nname = \"List %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.%d\"\n\n[[policy]]\nname = \"Gen\"\n[[policy.rule]]\nname = \"Rule %d\"\nfilter_list = \"List %d\"\nfilter_action = \"Encrypt\"\nauthentication = [ { method = \"psk\", secret = \"lab-only-key\" } ]\n", extra, i, i+1, i, i))
	}
	for i := range 5 {
		peer(i, "")
	}
	a, err := assigned(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := render.Render(a, render.Options{Prior: render.NewPrior("test", nil)})
	if err != nil {
		t.Fatal(err)
	}
	data := first.PriorBytes("test")
	for _, c := range []struct {
		name  string
		edit  func()
		taken int
	}{
		{"a line more in one file", func() { peer(2, "# a comment\n") }, 4},
		{"a file renamed", func() {
			if err := os.Rename(filepath.Join(dir, "10-peer4.toml"), filepath.Join(dir, "10-peer4-renamed.toml")); err != nil {
				t.Fatal(err)
			}
		}, 4},
		{"the folder renamed", func() {
			moved := filepath.Join(filepath.Dir(dir), "moved.d")
			if err := os.Rename(dir, moved); err != nil {
				t.Fatal(err)
			}
			dir = moved
		}, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.edit()
			a, err := assigned(t, dir)
			if err != nil {
				t.Fatal(err)
			}
			want, err := render.Render(a, render.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := render.NewPrior("test", data)
			got, err := render.Render(a, render.Options{Prior: p})
			if err != nil {
				t.Fatal(err)
			}
			if g, w := rendered(t, got), rendered(t, want); g != w {
				t.Fatalf("with the prior:\n%s\nwithout:\n%s", g, w)
			}
			if p.Reused() != c.taken {
				t.Errorf("took %d connections from the prior, want %d", p.Reused(), c.taken)
			}
			data = got.PriorBytes("test")
		})
	}
}

// TestPriorErrorsAsRender: a policy that does not render says so as
// without a Prior, though the Prior holds its connections.
func TestPriorErrorsAsRender(t *testing.T) {
	_, data := keptForm(t, genAssigned(t, 6, nil), "test")
	// Rule "Rule-1" renders to the name of "Rule 1", whose connection
	// the prior holds.
	a := genAssigned(t, 6, func(s string) string { return strings.Replace(s, "name = \"Rule 2\"\n", "name = \"Rule-1\"\n", 1) })
	_, want := render.Render(a, render.Options{})
	if want == nil {
		t.Fatal("no collision without the prior")
	}
	_, got := render.Render(a, render.Options{Prior: render.NewPrior("test", data)})
	if got == nil || got.Error() != want.Error() {
		t.Fatalf("with the prior: %v\nwithout: %v", got, want)
	}
}

// TestPriorRefusesOtherForms: a form of another program, torn or altered
// holds nothing.
func TestPriorRefusesOtherForms(t *testing.T) {
	res, data := keptForm(t, genAssigned(t, 10, nil), "test")
	if n := render.NewPrior("test", data).Len(); n != len(res.Conns) {
		t.Fatalf("the form holds %d connections, want %d", n, len(res.Conns))
	}
	if n := render.NewPrior("another program", data).Len(); n != 0 {
		t.Errorf("another program's form holds %d connections", n)
	}
	for _, at := range []int{len(data) / 3, len(data) / 2, len(data) - 1} {
		altered := bytes.Clone(data)
		altered[at] ^= 1
		if n := render.NewPrior("test", altered).Len(); n != 0 {
			t.Errorf("altered at %d: holds %d connections", at, n)
		}
		if n := render.NewPrior("test", data[:at]).Len(); n != 0 {
			t.Errorf("torn at %d: holds %d connections", at, n)
		}
	}
	// Any one bit of the form flipped, checksum included: CRC-32C tells
	// every one.
	for at := range data {
		altered := bytes.Clone(data)
		altered[at] ^= 1 << (at % 8)
		if n := render.NewPrior("test", altered).Len(); n != 0 {
			t.Fatalf("bit %d of byte %d flipped: holds %d connections", at%8, at, n)
		}
	}
	if bytes.Contains(data, []byte("lab-only-key")) {
		t.Error("the form holds a preshared key")
	}
}

// TestPriorKeyCoversEveryField: changing any one field of a rule (but a
// secret's value), of what it resolved to or of what it was written as,
// changes its connection's key, so a connection is never taken for a
// rule that differs from the one it was made from. A field of a kind the
// test cannot change fails it: the key's form must be looked at then.
func TestPriorKeyCoversEveryField(t *testing.T) {
	a := genAssigned(t, 8, func(s string) string {
		return strings.Replace(s, "destination_port = 28\n", "destination_port = 28\n  mirrored = true\n", 1)
	})
	rule := &a.Rules[6]
	if rule.List.Filters[0].Mirrored == nil || rule.Rule == nil || len(rule.Auth) == 0 {
		t.Fatal("the rule lacks a field the test changes")
	}
	rule.Auth[0].CA, rule.Auth[0].Cert = []byte("ca"), []byte("cert")
	n := changeEach(t, reflect.ValueOf(rule).Elem(), "rule", func() [32]byte { return render.RuleDigestForTest(*rule) }, nil)
	n2 := changeEach(t, reflect.ValueOf(rule).Elem(), "rule", func() [32]byte { return render.RuleValueDigestForTest(*rule) }, nil)
	if n < 60 || n2 != n {
		t.Fatalf("only %d fields changed (%d by appendValue)", n, n2)
	}
	t.Logf("%d changes", n)
}

// changeEach changes each field of v (through pointers, slices and
// interfaces; secret values left alone) one at a time, checks that every
// digest digests gives changes, and sets it back; it returns how many it
// changed. A field of a kind it cannot change fails the test.
func changeEach[D comparable](t *testing.T, v reflect.Value, path string, digests func() D, skip func(path string) bool) int {
	t.Helper()
	base := digests()
	n := 0
	check := func(path string, v reflect.Value, other reflect.Value) {
		old := reflect.New(v.Type()).Elem()
		old.Set(v)
		v.Set(other)
		n++
		if digests() == base {
			t.Errorf("%s changed, the key did not", path)
		}
		v.Set(old)
		if digests() != base {
			t.Fatalf("%s set back, the key is another", path)
		}
	}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if skip != nil && skip(path) {
			return
		}
		switch v.Type() {
		case reflect.TypeFor[model.Secret]():
			return
		case reflect.TypeFor[netip.Addr]():
			check(path, v, reflect.ValueOf(netip.MustParseAddr("192.0.2.77")))
			return
		case reflect.TypeFor[netip.Prefix]():
			check(path, v, reflect.ValueOf(netip.MustParsePrefix("192.0.2.0/29")))
			return
		case reflect.TypeFor[[]byte]():
			check(path, v, reflect.ValueOf(append(bytes.Clone(v.Bytes()), 'x')))
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				if !v.Type().Field(i).IsExported() {
					t.Errorf("%s: unexported field %s", path, v.Type().Field(i).Name)
					continue
				}
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		case reflect.Pointer:
			if v.IsNil() {
				t.Errorf("%s: nil, not changed", path)
				return
			}
			walk(v.Elem(), path)
		case reflect.Slice:
			if v.Len() == 0 {
				check(path+" (one)", v, reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
				return
			}
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
			check(path+" (one more)", v, reflect.Append(v, v.Index(0)))
		case reflect.String:
			check(path, v, reflect.ValueOf(v.String()+"x").Convert(v.Type()))
		case reflect.Int, reflect.Int64:
			check(path, v, reflect.ValueOf(v.Int()+1).Convert(v.Type()))
		case reflect.Bool:
			check(path, v, reflect.ValueOf(!v.Bool()))
		case reflect.Interface:
			for _, other := range []any{int64(4242), "4242", nil} {
				o := reflect.New(v.Type()).Elem()
				if other != nil {
					o.Set(reflect.ValueOf(other))
				}
				if v.IsNil() && other == nil || !v.IsNil() && reflect.DeepEqual(v.Interface(), other) {
					continue
				}
				check(fmt.Sprintf("%s (%v)", path, other), v, o)
			}
		default:
			t.Errorf("%s: a field of kind %s the test cannot change", path, v.Kind())
		}
	}
	walk(v, path)
	return n
}

// TestPriorKeyCoversGlobals: changing any setting of the endpoint, of the
// policy (but its rules) or of the file's endpoint and assignment changes
// every connection's key.
func TestPriorKeyCoversGlobals(t *testing.T) {
	a := genAssigned(t, 3, func(s string) string {
		s = strings.Replace(s, "[endpoint]\n", "[endpoint]\nname = \"Alicepc\"\nid = \"alice\"\nlan_interface = \"eth0\"\nremote_access_interface = \"ppp0\"\n", 1)
		return strings.Replace(s, "[[policy]]\nname = \"Gen\"\n", "[[policy]]\nname = \"Gen\"\ndescription = \"d\"\n", 1)
	})
	digest := func() [32]byte { return render.GlobalDigestForTest(a) }
	n := changeEach(t, reflect.ValueOf(&a.Endpoint).Elem(), "endpoint", digest, nil)
	n += changeEach(t, reflect.ValueOf(a.Policy).Elem(), "policy", digest, func(path string) bool { return path == "policy.Rules" })
	n += changeEach(t, reflect.ValueOf(&a.File.Endpoint).Elem(), "file.endpoint", digest, nil)
	n += changeEach(t, reflect.ValueOf(&a.File.Assign).Elem(), "file.assign", digest, nil)
	if n < 15 {
		t.Fatalf("only %d settings changed", n)
	}
}

// FuzzPriorRead: a kept form whose checksum holds but whose body is
// anything reads without a panic, holds at most what its size allows,
// and a body that reads is the same when read again.
func FuzzPriorRead(f *testing.F) {
	_, form := keptForm(f, genAssigned(f, 6, nil), "fuzz")
	body := render.PriorBodyForTest(form)
	f.Add(body)
	f.Add(body[:len(body)/2])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, body []byte) {
		form := render.PriorFormForTest("fuzz", body)
		n := render.NewPrior("fuzz", form).Len()
		if n > len(body)/64 {
			t.Fatalf("%d connections from %d bytes", n, len(body))
		}
		if m := render.NewPrior("fuzz", bytes.Clone(form)).Len(); m != n {
			t.Fatalf("read again: %d connections, %d before", m, n)
		}
	})
}
