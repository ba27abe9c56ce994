package render_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/internal/linediff"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Abczz with Bob":               "abczz-with-bob",
		"Abczz: with bob!":             "abczz-with-bob",
		"Abczz to Bob's PC":            "abczz-to-bob-s-pc",
		"--Ünïcode--":                  "n-code",
		"2001:db8::1":                  "2001-db8-1",
		"":                             "",
		strings.Repeat("a", 39) + " b": strings.Repeat("a", 39),
	} {
		if got := render.Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]render.Backend{"": render.Kernel, "kernel": render.Kernel, "libipsec": render.LibIPsec} {
		if got, err := render.ParseBackend(in); err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := render.ParseBackend("netlink"); err == nil || !strings.Contains(err.Error(), `unknown IPsec backend "netlink"`) {
		t.Errorf("ParseBackend(netlink): %v", err)
	}
}

// load renders a golden file's policy.
func load(t *testing.T, golden string, o render.Options) *render.Result {
	t.Helper()
	g := readGolden(t, filepath.Join("testdata", golden))
	f, err := model.Parse(g.policy, g.data)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(a, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeterministic(t *testing.T) {
	var first string
	for i := 0; i < 5; i++ {
		var b bytes.Buffer
		if err := load(t, "permit-block.txt", render.Options{}).WriteSwanctl(&b, render.WriteOptions{ShowSecrets: true}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b.String()
		} else if b.String() != first {
			t.Fatalf("run %d renders differently:\n%s", i, linediff.Diff(first, b.String()))
		}
	}
}

func TestRedacted(t *testing.T) {
	res := load(t, "secret-encoding.txt", render.Options{})
	var b bytes.Buffer
	if err := res.WriteSwanctl(&b, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(res.Secrets) != 2 {
		t.Fatalf("%d secrets, want 2", len(res.Secrets))
	}
	for _, s := range res.Secrets {
		for _, leak := range []string{s.Data.Reveal(), "lab-only", "0sbGFi", "0sMFgt"} {
			if strings.Contains(b.String(), leak) {
				t.Errorf("redacted output contains %q", leak)
			}
		}
	}
	if n := strings.Count(b.String(), `secret = "`+render.SecretPlaceholder+`"`); n != 2 {
		t.Errorf("%d placeholders, want 2:\n%s", n, b.String())
	}
}

// TestOrigins checks that names map back to policy, rule and filter.
func TestOrigins(t *testing.T) {
	res := load(t, "multi-peer.txt", render.Options{})
	if got := strings.Join(res.ConnNames(), " "); got != "sm-servers-172-20-0-5 sm-servers-172-31-67-244" {
		t.Errorf("ConnNames = %s", got)
	}
	c := res.Conn("sm-servers-172-20-0-5")
	if c == nil {
		t.Fatal("no connection sm-servers-172-20-0-5")
	}
	o := c.Origin
	if o.Policy != "Admin" || o.Rule != "Servers" || o.RuleIndex != 0 || o.FilterList != "SSH to the servers" || o.Action != "negotiate" || o.Peer != "172.20.0.5" || o.Line == 0 {
		t.Errorf("origin %+v", o)
	}
	if len(c.Children) != 2 || c.Children[0].FilterIndex != 1 || c.Children[1].FilterIndex != 2 || c.Children[0].Name != "sm-servers-172-20-0-5-2" {
		t.Errorf("children %+v", c.Children)
	}
	if s := c.Children[1].Summary; s != "172.20.0.5 → me udp 514→any" {
		t.Errorf("summary %q", s)
	}
	if res.Conn("nope") != nil {
		t.Errorf("Conn(nope) found something")
	}
}

// TestHashes checks what the hashes used by plan/apply react to.
func TestHashes(t *testing.T) {
	a := load(t, "example-alice-bob-alice.txt", render.Options{})
	b := load(t, "example-alice-bob-alice.txt", render.Options{})
	ca, cb := a.Conns[0], b.Conns[0]
	if ca.Hash() != cb.Hash() || ca.IKEHash() != cb.IKEHash() {
		t.Fatalf("equal renderings hash differently")
	}
	// A different key changes no connection hash: secrets are not part of it.
	b.Secrets[0].Data = model.NewSecret("another lab-only key, long enough")
	if ca.Hash() != cb.Hash() {
		t.Errorf("the secret is part of the connection hash")
	}
	// A child setting changes Hash and that child's hash, not IKEHash.
	// Rendered settings are frozen (read-only): changed as a tree, whose
	// hashes must be the frozen ones until it changes.
	cb.Body = tree(cb.Body)
	if ca.Hash() != cb.Hash() || ca.IKEHash() != cb.IKEHash() || !maps.Equal(ca.ChildHashes(), cb.ChildHashes()) {
		t.Fatalf("a frozen body and its tree hash differently")
	}
	child := cb.Body.Get("children").Sec.All()[1].Sec
	child.Get("esp_proposals").List = []string{"aes128gcm16"}
	if ca.Hash() == cb.Hash() {
		t.Errorf("Hash ignores a child change")
	}
	if ca.IKEHash() != cb.IKEHash() {
		t.Errorf("IKEHash changes with a child")
	}
	ha, hb := ca.ChildHashes(), cb.ChildHashes()
	if len(ha) != 3 || ha["sm-abczz-with-bob-1"] != hb["sm-abczz-with-bob-1"] || ha["sm-abczz-with-bob-2"] == hb["sm-abczz-with-bob-2"] {
		t.Errorf("child hashes %v vs %v", ha, hb)
	}
	// An IKE setting changes IKEHash.
	cb.Body.Get("remote_addrs").List = []string{"172.31.67.245"}
	if ca.IKEHash() == cb.IKEHash() {
		t.Errorf("IKEHash ignores remote_addrs")
	}
	// The backend shows in the hashes (mode and start action differ).
	l := load(t, "example-alice-bob-alice.txt", render.Options{Backend: render.LibIPsec})
	if l.Conns[0].Hash() == ca.Hash() {
		t.Errorf("kernel and libipsec renderings hash the same")
	}
}

// TestExamplesRender renders every example for both backends: the
// examples must stay valid, and they hold only negotiate rules, so both
// backends must take them.
func TestExamplesRender(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*", "*.toml"))
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, p := range files {
		for _, b := range []render.Backend{render.Kernel, render.LibIPsec} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := model.Parse(p, data)
			if err != nil {
				t.Fatal(err)
			}
			a, warns, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true})
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if len(warns) > 0 {
				t.Errorf("%s: warnings: %v", p, warns)
			}
			if _, err := render.Render(a, render.Options{Backend: b}); err != nil {
				t.Errorf("%s (%s): %v", p, b, err)
			}
		}
	}
}

func TestTrafficSelectors(t *testing.T) {
	for in, want := range map[string]string{
		"dynamic[tcp/6667]":          "dynamic[tcp/6667]",
		"dynamic":                    "dynamic",
		"10.0.0.1":                   "10.0.0.1/32",
		"10.0.0.7/24":                "10.0.0.0/24",
		"::/0[udp]":                  "::/0[udp]",
		"172.31.67.244/32[6/6668]":   "172.31.67.244/32[tcp/6668]",
		"10.0.0.0/8[%any/53]":        "10.0.0.0/8[%any/53]",
		"10.0.0.0/8[udp/1000-2000]":  "10.0.0.0/8[udp/1000-2000]",
		"2001:db8::/32[ipv6-icmp]":   "2001:db8::/32[ipv6-icmp]",
		"172.16.98.231/32[tcp/%any]": "172.16.98.231/32[tcp]",
	} {
		ts, err := render.ParseTS(in)
		if err != nil {
			t.Errorf("ParseTS(%q): %v", in, err)
			continue
		}
		if got := ts.String(); got != want {
			t.Errorf("ParseTS(%q).String() = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "bobslap", "10.0.0.1[xyz/1]", "10.0.0.1[tcp/nosuchport-at-all]"} {
		if _, err := render.ParseTS(bad); err == nil {
			t.Errorf("ParseTS(%q) succeeded", bad)
		}
	}
	mustTS := func(s string) render.TS {
		ts, err := render.ParseTS(s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	wide, narrow := mustTS("dynamic[tcp]").Resolve(netip.MustParseAddr("172.16.98.231")), mustTS("172.16.98.231/32[tcp/40000]")
	if !wide.Covers(narrow) || narrow.Covers(wide) || wide.Equal(narrow) || !narrow.Equal(narrow) {
		t.Errorf("Covers/Equal: %v vs %v", wide, narrow)
	}
	if mustTS("dynamic").Covers(mustTS("dynamic")) {
		t.Errorf("an unresolved dynamic selector covers something")
	}
	if mustTS("10.0.0.0/24[udp]").Covers(mustTS("10.0.0.5/32[tcp/53]")) {
		t.Errorf("udp covers tcp")
	}
}

func TestParseTSDashedServiceName(t *testing.T) {
	got, err := render.ParseTS("10.0.0.1/32[tcp/zabbix-agent]")
	if err != nil {
		t.Fatalf("zabbix-agent: %v", err)
	}
	if got.PortLo != 10050 || got.PortHi != 10050 {
		t.Fatalf("zabbix-agent parsed as %d-%d, want 10050", got.PortLo, got.PortHi)
	}
	r, err := render.ParseTS("10.0.0.1/32[tcp/1024-2048]")
	if err != nil || r.PortLo != 1024 || r.PortHi != 2048 {
		t.Fatalf("range: %+v %v", r, err)
	}
}

// On libipsec, a negotiate rule for some traffic to a peer black-holes
// the rest while its SA is up (issue 17 item 8): rendering warns, once
// per peer, at the first rule, naming what is covered; the kernel
// backend and a rule for all traffic do not warn.
func TestLibipsecBlackHoleWarning(t *testing.T) {
	p := filepath.Join("..", "examples", "alice-bob", "alice.toml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	warnings := func(data []byte, b render.Backend) []string {
		t.Helper()
		f, err := model.Parse(p, data)
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := render.Render(a, render.Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range res.Warnings {
			out = append(out, w.Error())
		}
		return out
	}
	got := warnings(data, render.LibIPsec)
	if len(got) != 1 || !strings.Contains(got[0], "alice.toml:43: warning:") ||
		!strings.Contains(got[0], "routes all traffic to 172.31.67.244 into its TUN device, and what no filter covers (anything but tcp/6667, tcp/6668, tcp from port 6668) is dropped there") {
		t.Errorf("libipsec warnings: %q", got)
	}
	if got := warnings(data, render.Kernel); len(got) != 0 {
		t.Errorf("kernel backend warnings: %q", got)
	}
	all := strings.Replace(string(data), "  [[filter_list.filter]]\n  source = \"172.31.67.244\"", "  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.31.67.244\"\n  [[filter_list.filter]]\n  source = \"172.31.67.244\"", 1)
	if all == string(data) {
		t.Fatal("alice.toml changed: no filter from Bob to add to")
	}
	if got := warnings([]byte(all), render.LibIPsec); len(got) != 0 {
		t.Errorf("with a filter for all traffic to Bob: warnings %q", got)
	}
}

// A negotiate rule to a DNS name on the kernel backend: rendering warns
// that an unresolved name leaves the rule without trap policies (issue 17
// item 2).
func TestDNSPeerTrapWarning(t *testing.T) {
	g := filepath.Join("testdata", "dns-peer.txt")
	b, err := os.ReadFile(g)
	if err != nil {
		t.Fatal(err)
	}
	in, _, _ := strings.Cut(string(b), "\n----------\n")
	f, err := model.Parse(g, []byte(in+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(a, render.Options{Backend: render.Kernel})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0].Error(), "peer Bobslap is a DNS name: charon resolves it when apply loads the connection") {
		t.Errorf("warnings: %v", res.Warnings)
	}
}

// TestItemJSONAsBefore: connection settings recorded before ItemExtra
// (files and comments beside the other fields) read the same, and are
// written with the same field names.
func TestItemJSONAsBefore(t *testing.T) {
	old := `{"items":[{"k":"certs","f":[{"path":"a.pem","data":"AAE="}]},{"k":"x","s":{"items":[{"k":"l","l":["a"],"il":true},{"k":"e","il":true}]},"c":"a note"},{"k":"v","v":"1"}]}`
	var s render.Section
	if err := json.Unmarshal([]byte(old), &s); err != nil {
		t.Fatal(err)
	}
	if f := s.Files("certs"); len(f) != 1 || f[0].Path != "a.pem" || string(f[0].Data) != "\x00\x01" {
		t.Errorf("files: %+v", f)
	}
	if it := s.Get("x"); it == nil || it.Comment() != "a note" || it.Sec.Get("l") == nil || !it.Sec.Get("e").IsList {
		t.Errorf("subsection: %+v", it)
	}
	if it := s.Get("v"); it.Files() != nil || it.Comment() != "" || it.ItemExtra != nil {
		t.Errorf("plain value got extras: %+v", it)
	}
	out, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"items":[{"k":"certs","f":[{"path":"a.pem","data":"AAE="}]},{"k":"x","s":{"items":[{"k":"l","l":["a"],"il":true},{"k":"e","il":true}]},"c":"a note"},{"k":"v","v":"1"}]}`
	if string(out) != want {
		t.Errorf("written as\n%s\nwant\n%s", out, want)
	}
	var a, b render.Section
	a.Add(render.FilesItem("certs", render.FileRef{Path: "a.pem", Data: []byte{0, 1}}))
	a.Sub("x", "a note").SetList("l", "a")
	b.Add(render.Item{Key: "certs", ItemExtra: &render.ItemExtra{FileRefs: []render.FileRef{{Path: "a.pem", Data: []byte{0, 1}}}}})
	b.Add(render.Item{Key: "x", Sec: render.NewSection([]render.Item{{Key: "l", List: []string{"a"}, IsList: true}}...), ItemExtra: &render.ItemExtra{Note: "a note"}})
	if a.Hash() != b.Hash() {
		t.Errorf("hash differs between constructors")
	}
}

// tree is a copy of s as a tree, to be changed.
func tree(s *render.Section) *render.Section {
	items := slices.Clone(s.All())
	for i := range items {
		if items[i].Sec != nil {
			items[i].Sec = tree(items[i].Sec)
		}
		items[i].List = slices.Clone(items[i].List)
	}
	return render.NewSection(items...)
}
