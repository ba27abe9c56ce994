package pair

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// examples copies an examples/ folder into a temp dir with key files at
// mode 0600 (git does not keep modes).
func examples(t *testing.T, folder string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "examples", folder)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(e.Name(), ".psk") || strings.HasSuffix(e.Name(), ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func load(t *testing.T, path string, data []byte, env map[string]model.Secret) Endpoint {
	t.Helper()
	if data == nil {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	f, err := model.Parse(path, data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{LookupEnv: func(k string) (string, bool) {
		if s, ok := env[k]; ok {
			return s.Reveal(), true
		}
		return "", false
	}})
	if err != nil {
		t.Fatalf("%s does not validate: %v\n%s", path, err, data)
	}
	res, err := render.Render(a, render.Options{Backend: render.Kernel})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return Endpoint{Path: path, Assigned: a, Result: res}
}

// selectorSet is every child's (local_ts, remote_ts) of an endpoint.
func selectorSet(e Endpoint) []string {
	var out []string
	for _, c := range e.Result.Conns {
		kids := c.Body.Get("children")
		for _, k := range kids.Sec.All() {
			out = append(out, strings.Join(k.Sec.Get("local_ts").List, ",")+" | "+strings.Join(k.Sec.Get("remote_ts").List, ",")+" | "+c.Body.Get("remote_addrs").List[0])
		}
	}
	slices.Sort(out)
	return out
}

func mirrorFile(t *testing.T, src Endpoint, peer, name, out string, renames map[string]string) (*Mirrored, Endpoint) {
	t.Helper()
	m, err := Mirror(src.Assigned, MirrorOptions{Peer: netip.MustParseAddr(peer), Name: name, OutPath: out, Renames: renames})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, m.Text, 0o644); err != nil {
		t.Fatal(err)
	}
	return m, load(t, out, nil, m.Env)
}

// The mirror of Alice's file for Bob renders the same selectors as the
// hand-written bob.toml, and check finds nothing wrong.
func TestMirrorAliceBob(t *testing.T) {
	dir := examples(t, "alice-bob")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	bob := load(t, filepath.Join(dir, "bob.toml"), nil, nil)
	m, got := mirrorFile(t, alice, "172.31.67.244", "Bobslap", filepath.Join(dir, "bob-mirror.toml"), nil)
	if want, have := selectorSet(bob), selectorSet(got); !slices.Equal(want, have) {
		t.Fatalf("mirrored selectors\n%s\nwant (bob.toml)\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range []string{`name = "Bobslap"`, `addresses = ["172.31.67.244"]`, `name = "Abczz to Alicepc"`, `name = "Abczz with Alicepc"`, `secret_file = "alice-bob.psk"`, `filter_action = "Encrypt Abczz"`, `assign = "Bobslap's IPSec"`} {
		if !strings.Contains(string(m.Text), s) {
			t.Errorf("mirror lacks %s:\n%s", s, m.Text)
		}
	}
	if rep := Check([]Endpoint{alice, got}, time.Now()); !rep.OK() {
		t.Fatalf("check of alice.toml and its mirror: %v", rep.Problems)
	}
	if rep := Check([]Endpoint{alice, bob}, time.Now()); !rep.OK() {
		t.Fatalf("check of the examples: %v", rep.Problems)
	}
	// Stable: the same input gives the same bytes.
	again, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.31.67.244"), Name: "Bobslap", OutPath: filepath.Join(dir, "bob-mirror.toml")})
	if err != nil || string(again.Text) != string(m.Text) {
		t.Fatalf("second mirror differs (err %v)", err)
	}
	// Mirroring the mirror gives Alice's selectors back.
	_, back := mirrorFile(t, got, "172.16.98.231", "Alicepc", filepath.Join(dir, "alice-again.toml"), nil)
	if want, have := selectorSet(alice), selectorSet(back); !slices.Equal(want, have) {
		t.Fatalf("mirror of the mirror\n%s\nwant\n%s", strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
}

// Alice has rules for Bob and Eve: Bob's mirror has only Bob's rule, with
// Bob's key; Eve's only Eve's, with hers.
func TestMirrorAliceBobEve(t *testing.T) {
	dir := examples(t, "alice-bob-eve")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	eve := load(t, filepath.Join(dir, "eve.toml"), nil, nil)
	mb, bob := mirrorFile(t, alice, "172.31.67.244", "Bobslap", filepath.Join(dir, "bob-mirror.toml"), nil)
	if strings.Contains(string(mb.Text), "Syslog") || strings.Contains(string(mb.Text), "alice-eve.psk") || mb.Rules != 1 {
		t.Fatalf("Bob's mirror mentions Eve's rule:\n%s", mb.Text)
	}
	me, eveM := mirrorFile(t, alice, "172.20.0.5", "Evepc", filepath.Join(dir, "eve-mirror.toml"),
		map[string]string{"Syslog to Eve's PC": "Syslog from Alice's PC", "Encrypt Abczz": "Encrypt syslog"})
	if strings.Contains(string(me.Text), "Abczz with") || !strings.Contains(string(me.Text), `secret_file = "alice-eve.psk"`) ||
		!strings.Contains(string(me.Text), `name = "Syslog from Alice's PC"`) || !strings.Contains(string(me.Text), `name = "Encrypt syslog"`) {
		t.Fatalf("Eve's mirror:\n%s", me.Text)
	}
	if want, have := selectorSet(eve), selectorSet(eveM); !slices.Equal(want, have) {
		t.Fatalf("Eve's mirrored selectors %v, want %v", have, want)
	}
	if rep := Check([]Endpoint{alice, bob, eveM}, time.Now()); !rep.OK() {
		t.Fatalf("check: %v", rep.Problems)
	}
	// Bob and Eve have nothing to say to each other: no pair, no problem.
	rep := Check([]Endpoint{bob, eveM}, time.Now())
	if !rep.OK() || len(rep.Lines) != 0 {
		t.Fatalf("Bob and Eve: %v %v", rep.Lines, rep.Problems)
	}
	if _, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.20.0.99")}); err == nil {
		t.Fatal("mirror for a stranger succeeded")
	}
	// A rename that matches nothing is a typo, not a silent no-op.
	if _, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.20.0.5"), Renames: map[string]string{"Syslog to Eves PC": "x"}}); err == nil || !strings.Contains(err.Error(), `"Syslog to Eves PC"`) {
		t.Fatalf("unused rename: %v", err)
	}
}

// An inline key is never copied: the mirror names a variable.
func TestMirrorInlineSecret(t *testing.T) {
	dir := examples(t, "alice-bob")
	b, _ := os.ReadFile(filepath.Join(dir, "alice.toml"))
	const key = "inline-lab-key-0123456789-abcdef"
	text := strings.Replace(string(b), `secret_file = "alice-bob.psk"`, `secret = "`+key+`"`, 1)
	alice := load(t, filepath.Join(dir, "alice-inline.toml"), []byte(text), nil)
	m, bob := mirrorFile(t, alice, "172.31.67.244", "Bobslap", filepath.Join(dir, "bob.toml"), nil)
	if strings.Contains(string(m.Text), key) || strings.Contains(strings.Join(m.Notes, " "), key) {
		t.Fatal("the inline key was copied")
	}
	if !strings.Contains(string(m.Text), `secret_env = "SWANMGR_PSK_ABCZZ_WITH_BOB"`) || len(m.Notes) == 0 {
		t.Fatalf("want a secret_env reference and a note:\n%s\n%v", m.Text, m.Notes)
	}
	if rep := Check([]Endpoint{alice, bob}, time.Now()); !rep.OK() {
		t.Fatalf("check: %v", rep.Problems)
	}
}

// A tunnel rule: the mirror names this side as tunnel endpoint and swaps
// source and destination (a tunnel filter has the local network as source).
func TestMirrorTunnel(t *testing.T) {
	dir := examples(t, "alice-bob")
	text := `assign = "GW"
[endpoint]
name = "gwa"
addresses = ["192.0.2.1"]
[[filter_list]]
name = "Nets to gwb"
  [[filter_list.filter]]
  source = "10.1.0.0/16"
  destination = "10.2.0.0/16"
  protocol = "udp"
  destination_port = 53
[[filter_action]]
name = "Encrypt"
action = "negotiate"
[[policy]]
name = "GW"
  [[policy.rule]]
  filter_list = "Nets to gwb"
  filter_action = "Encrypt"
  tunnel_endpoint = "192.0.2.2"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
`
	gwa := load(t, filepath.Join(dir, "gwa.toml"), []byte(text), nil)
	m, gwb := mirrorFile(t, gwa, "192.0.2.2", "gwb", filepath.Join(dir, "gwb.toml"), nil)
	if !strings.Contains(string(m.Text), `tunnel_endpoint = "192.0.2.1"`) || !strings.Contains(string(m.Text), "source = \"10.2.0.0/16\"\n  destination = \"10.1.0.0/16\"\n  protocol = \"udp\"\n  source_port = 53") {
		t.Fatalf("tunnel mirror:\n%s", m.Text)
	}
	if rep := Check([]Endpoint{gwa, gwb}, time.Now()); !rep.OK() {
		t.Fatalf("check: %v", rep.Problems)
	}
	// Swapped networks on one side: reversed addresses.
	bad := strings.Replace(strings.Replace(string(m.Text), `source = "10.2.0.0/16"`, `source = "X"`, 1), `destination = "10.1.0.0/16"`, `destination = "10.2.0.0/16"`, 1)
	bad = strings.Replace(bad, `source = "X"`, `source = "10.1.0.0/16"`, 1)
	bad = strings.Replace(bad, "source_port = 53", "destination_port = 53", 1)
	wrong := load(t, filepath.Join(dir, "gwb-wrong.toml"), []byte(bad), nil)
	rep := Check([]Endpoint{gwa, wrong}, time.Now())
	if rep.OK() || !strings.Contains(rep.Problems[0].Error(), "reversed source and destination addresses") {
		t.Fatalf("want reversed addresses, got %v", rep.Problems)
	}
}

// Each problem check names both files and lines, in the article's words.
func TestCheckProblems(t *testing.T) {
	dir := examples(t, "alice-bob")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	bobText, _ := os.ReadFile(filepath.Join(dir, "bob.toml"))
	bob := string(bobText)
	literal := strings.NewReplacer(`source = "172.16.98.231"`, `source = "me"`, `destination = "me"`, `destination = "172.16.98.231"`).Replace(bob)
	literal = literal[:strings.LastIndex(literal, "  # Bob connects")] + literal[strings.Index(literal, "[[filter_action]]"):]
	if err := os.WriteFile(filepath.Join(dir, "wrong.psk"), []byte("lab-only: a key Alice does not have 0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, text string
		want       []string
	}{
		{"reversed ports", literal, []string{"alice.toml:15 ↔ ", "bob.toml:16: reversed ports", `"me → 172.31.67.244 tcp any→6667"`, "narrows the SA to the intersection (with these two filters 172.16.98.231/32[tcp/6667] === 172.31.67.244/32[tcp/6667]"}},
		{"missing port", strings.Replace(bob, "destination_port = 6667\n", "", 1), []string{"a missing port", "narrows"}},
		{"missing filter", bob[:strings.LastIndex(bob, "  # Bob connects")] + bob[strings.Index(bob, "[[filter_action]]"):], []string{"alice.toml:26 ↔ ", "no filter of", "with these two filters 172.16.98.231/32[tcp/6668] === 172.31.67.244/32[tcp/6668]"}},
		{"psk", strings.Replace(bob, `"alice-bob.psk"`, `"wrong.psk"`, 1), []string{"preshared keys differ", "wrong.psk", "AUTHENTICATION_FAILED"}},
		{"esp", strings.Replace(bob, "security = \"high\"\npfs = true", "security = \"custom\"\nesp_encryption = [\"aes256\"]\nesp_integrity = [\"sha256\"]\npfs_group = \"x25519\"", 1), []string{"no common ESP proposal", "NO_PROPOSAL_CHOSEN"}},
		{"pfs", strings.Replace(bob, "pfs = true\n", "", 1), []string{"session key PFS differs", "first rekey"}},
		{"mode", strings.Replace(bob, "  network = \"lan\"\n", "  network = \"lan\"\n  tunnel_endpoint = \"172.16.98.231\"\n", 1), []string{"modes differ"}},
		{"identity", strings.Replace(bob, "addresses = [\"172.31.67.244\"]", "addresses = [\"172.31.67.244\"]\nid = \"Bobslap\"", 1), []string{"identities differ", `"Bobslap"`}},
		{"no rule back", strings.Replace(bob, "172.16.98.231", "172.16.98.232", -1), []string{"has no rule for 172.16.98.231"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			other := load(t, filepath.Join(dir, "bob.toml"), []byte(c.text), nil)
			rep := Check([]Endpoint{alice, other}, time.Now())
			if rep.OK() {
				t.Fatalf("no problem found; report:\n%s", strings.Join(rep.Lines, "\n"))
			}
			var all []string
			for _, p := range rep.Problems {
				all = append(all, p.Error())
			}
			text := strings.Join(all, "\n")
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("problems lack %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "lab-only") {
				t.Fatal("a key was printed")
			}
		})
	}
}

// Certificates: the mirror names the peer's certificate and key and the
// same CA; check verifies each certificate against the other's CA and the
// identity each side expects.
func TestMirrorCertificates(t *testing.T) {
	dir := examples(t, "alice-bob-certs")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	m, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.31.67.244"), Name: "Bobslap",
		OutPath: filepath.Join(dir, "m.toml"), Certificate: filepath.Join(dir, "bob.pem"), PrivateKey: filepath.Join(dir, "bob.key")})
	if err != nil {
		t.Fatal(err)
	}
	if m.NeedsFiles || !strings.Contains(string(m.Text), `ca = "ca.pem", certificate = "bob.pem", private_key = "bob.key"`) {
		t.Fatalf("certificate mirror:\n%s", m.Text)
	}
	bob := load(t, filepath.Join(dir, "m.toml"), m.Text, nil)
	if rep := Check([]Endpoint{alice, bob}, time.Now()); !rep.OK() {
		t.Fatalf("check: %v", rep.Problems)
	}
	// Bob presents Alice's certificate: it does not carry Bob's identity.
	wrong := strings.NewReplacer(`certificate = "bob.pem"`, `certificate = "alice.pem"`, `private_key = "bob.key"`, `private_key = "alice.key"`).Replace(string(m.Text))
	bad := load(t, filepath.Join(dir, "m.toml"), []byte(wrong), nil)
	rep := Check([]Endpoint{alice, bad}, time.Now())
	if rep.OK() || !strings.Contains(rep.Problems[0].Error(), "does not carry") {
		t.Fatalf("want an identity problem, got %v", rep.Problems)
	}
	// Without the peer's files: placeholders, and the caller is told.
	m, err = Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.31.67.244"), Name: "Bobslap", OutPath: filepath.Join(dir, "m.toml")})
	if err != nil || !m.NeedsFiles || len(m.Notes) == 0 {
		t.Fatalf("placeholders: %v %v", err, m)
	}
}

func TestSelectProposal(t *testing.T) {
	s := selectProposal([]string{"aes256gcm16-aes128gcm16-prfsha384-prfsha256-x25519-ecp384"}, []string{"aes128gcm16-prfsha256-ecp384"}, true)
	if !s.ok || s.chosen != "aes128gcm16-prfsha256-ecp384" {
		t.Fatalf("%+v", s)
	}
	s = selectProposal([]string{"aes256-sha256-modp3072"}, []string{"aes256-sha384-modp3072"}, false)
	if s.ok || !strings.Contains(s.why, "integrity") {
		t.Fatalf("%+v", s)
	}
}
