package pair

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two negotiate rules to one peer become one connection with the
// children of both (issue 17 item 1); check compares each rule's
// children with the mirroring rule's, proposals and lifetimes per rule,
// and IKE and authentication once per connection.
func TestCheckTwoRulesOnePeer(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "render", "testdata", "two-rules-one-peer.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := strings.Cut(string(src), "\n----------\n")
	dir := t.TempDir()
	ap := filepath.Join(dir, "alice.toml")
	if err := os.WriteFile(ap, []byte(text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	alice := load(t, ap, nil, nil)
	if n := len(alice.Result.Conns); n != 1 {
		t.Fatalf("%d connections, want 1 for the one peer", n)
	}
	m, bob := mirrorFile(t, alice, "172.31.67.244", "Bobslap", filepath.Join(dir, "bob.toml"), nil)
	rep := Check([]Endpoint{alice, bob}, time.Now())
	if !rep.OK() {
		t.Fatalf("check finds problems in a mirror:\n%v\n%s", rep.Problems, m.Text)
	}
	lines := strings.Join(rep.Lines, "\n")
	for _, w := range []string{`rule "Abczz" (`, `rule "Syslog" (`, "ESP: aes256gcm16 would be chosen", "PFS: x25519 on both", "lifetimes: both rekey after 1800s", "ESP: aes128gcm16 would be chosen", "selectors: 2 of 2 filters"} {
		if !strings.Contains(lines, w) {
			t.Errorf("report lacks %q:\n%s", w, lines)
		}
	}
	if n := strings.Count(lines, "IKE: "); n != 1 {
		t.Errorf("IKE compared %d times, want once for the one connection:\n%s", n, lines)
	}

	// Bob's Syslog rule with other proposals: the problem is Syslog's,
	// pointing at its rule on both sides.
	wrong := strings.Replace(string(m.Text), `esp_encryption = ["aes128gcm16"]`, `esp_encryption = ["aes256gcm16"]`, 1)
	if wrong == string(m.Text) {
		t.Fatalf("the mirror has no esp_encryption line to change:\n%s", m.Text)
	}
	other := load(t, filepath.Join(dir, "bob.toml"), []byte(wrong), m.Env)
	rep = Check([]Endpoint{alice, other}, time.Now())
	if rep.OK() {
		t.Fatalf("no problem found:\n%s", strings.Join(rep.Lines, "\n"))
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Error(), "no common ESP proposal") || !strings.Contains(rep.Problems[0].Error(), "alice.toml:49") {
		t.Errorf("want one ESP problem at Syslog's rule (alice.toml:49), got %v", rep.Problems)
	}
}
