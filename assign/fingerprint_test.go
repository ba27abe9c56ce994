package assign

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// fingerprintBefore is fingerprint as it was before one HMAC served many
// secrets: records keep its fingerprints.
func fingerprintBefore(key []byte, s render.Secret) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s.Type))
	for _, o := range s.Owners {
		m.Write([]byte{0})
		m.Write([]byte(o))
	}
	m.Write([]byte{0, 0})
	m.Write([]byte(s.Data.Reveal()))
	return hex.EncodeToString(m.Sum(nil))
}

// One fingerprinter gives, secret after secret (longer and shorter), the
// fingerprints recorded before; and it keeps no secret value.
func TestFingerprintAsBefore(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secrets := []render.Secret{
		{Type: "IKE", Owners: []string{"172.16.98.231", "172.31.67.244"}, Data: model.NewSecret("a-preshared-key-of-some-length-1234")},
		{Type: "IKE", Owners: []string{"10.1.0.7"}, Data: model.NewSecret("x")},
		{Type: "IKE", Data: model.NewSecret(strings.Repeat("long", 300))},
		{Type: "IKE", Owners: []string{"a", "b", "c"}, Data: model.NewSecret("")},
		{Type: "EAP", Owners: []string{"172.16.98.231"}, Data: model.NewSecret("a-preshared-key-of-some-length-1234")},
	}
	f := newFingerprinter(key)
	for round := range 2 {
		for i, s := range secrets {
			if got, want := f.of(s), fingerprintBefore(key, s); got != want {
				t.Errorf("round %d, secret %d: %s, want %s", round, i, got, want)
			}
			if got, want := fingerprint(key, s), fingerprintBefore(key, s); got != want {
				t.Errorf("fingerprint of secret %d: %s, want %s", i, got, want)
			}
		}
	}
	if strings.Contains(string(f.buf[:cap(f.buf)]), "long") || strings.Contains(string(f.buf[:cap(f.buf)]), "preshared") {
		t.Error("the fingerprinter's buffer keeps a secret value")
	}
}

// The program is identified by the running file, not by the file at its
// path: a package upgrade renames the new binary over the old one while
// an old apply may run on (or wait for the lock); what that apply keeps
// must not pass for the new program's.
func TestProgramIdentityIsTheRunningFile(t *testing.T) {
	dir := t.TempDir()
	running, path := filepath.Join(dir, "running"), filepath.Join(dir, "swanmgr")
	for _, p := range []string{running, path} {
		if err := os.WriteFile(p, []byte("a program"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gone := filepath.Join(dir, "gone")
	before := programIdentity(running, path)
	byPath := programIdentity(gone, path)
	if before == "" || byPath == "" {
		t.Fatal("no identity")
	}
	// Another binary renamed over the path: the same size, time kept.
	st, _ := os.Stat(path)
	other := filepath.Join(dir, "new")
	if err := os.WriteFile(other, []byte("b program"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if got := programIdentity(running, path); got != before {
		t.Fatal("the identity follows the file at the path, not the running one")
	}
	// Without the running file to look at, the file at the path (now
	// another) is another identity, though its size and time are the same.
	if programIdentity(gone, path) == byPath {
		t.Fatal("two files of one size and modification time are one identity")
	}
	if programIdentity(gone, filepath.Join(dir, "gone too")) != "" {
		t.Fatal("an identity without a file")
	}
	if programFingerprint() == "" || programFingerprint() != programIdentity(selfExe, mustExecutable(t)) {
		t.Fatal("the running program has no identity, or another than its file's")
	}
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// A large input's fingerprint is kept for the same key, name and data,
// and made again for any other: another key, name, kind, the data's
// beginning only, or other data of the same bytes but one.
func TestKeyedFingerprintKept(t *testing.T) {
	key, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	data := bytes.Repeat([]byte("[[filter_list]]\n"), 10000)
	want := makeFingerprint(key, "policy", "/p", data)
	if got := keyedFingerprint(key, "policy", "/p", data); got != want {
		t.Fatalf("made %s, want %s", got, want)
	}
	if got := keyedFingerprint(key, "policy", "/p", data); got != want {
		t.Fatalf("kept %s, want %s", got, want)
	}
	changed := bytes.Clone(data)
	changed[len(changed)/2] ^= 1
	for what, got := range map[string]string{
		"another key":  keyedFingerprint(other, "policy", "/p", data),
		"another name": keyedFingerprint(key, "policy", "/q", data),
		"another kind": keyedFingerprint(key, "file", "/p", data),
		"its start":    keyedFingerprint(key, "policy", "/p", data[:len(data)-1]),
		"other data":   keyedFingerprint(key, "policy", "/p", changed),
	} {
		if got == want {
			t.Errorf("%s: the kept fingerprint", what)
		}
	}
	if got := keyedFingerprint(key, "policy", "/p", bytes.Clone(data)); got != want {
		t.Errorf("the same bytes elsewhere: %s, want %s", got, want)
	}
}
