package pair

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// testLoad is the Load a caller gives VerifyMirror.
func testLoad(path string, text []byte, env map[string]model.Secret) (*Endpoint, error) {
	f, err := model.Parse(path, text)
	if err != nil {
		return nil, err
	}
	a, _, err := model.Validate(f, model.ValidateOptions{LookupEnv: func(k string) (string, bool) {
		if s, ok := env[k]; ok {
			return s.Reveal(), true
		}
		return "", false
	}})
	if err != nil {
		return nil, err
	}
	res, err := render.Render(a, render.Options{Backend: render.Kernel})
	if err != nil {
		return nil, err
	}
	return &Endpoint{Path: path, Assigned: a, Result: res}, nil
}

// The file for the peer names the key file and CA by their names next to
// its own file, never by this computer's paths, says what to copy, and
// is named after the peer; it still validates and agrees with its source
// here, where the key is at the source's path.
func TestMirrorPeerPathsAndName(t *testing.T) {
	dir := examples(t, "alice-bob")
	b, _ := os.ReadFile(filepath.Join(dir, "alice.toml"))
	text := strings.NewReplacer(`assign = "Alice's IPSec"`, `assign = "Office"`, `name = "Alice's IPSec"`, `name = "Office"`).Replace(string(b))
	alice := load(t, filepath.Join(dir, "alice.toml"), []byte(text), nil)
	outDir := filepath.Join(t.TempDir(), "for-bob")
	out := filepath.Join(outDir, "bob.toml")
	m, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.31.67.244"), Name: "Bobslap", OutPath: out})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`secret_file = "alice-bob.psk"`, `assign = "Bobslap's Office"`, `name = "Bobslap's Office"`} {
		if !strings.Contains(string(m.Text), want) {
			t.Errorf("mirror lacks %s:\n%s", want, m.Text)
		}
	}
	if strings.Contains(string(m.Text), dir) || strings.Contains(string(m.Text), "..") {
		t.Errorf("mirror names this computer's path:\n%s", m.Text)
	}
	src := filepath.Join(dir, "alice-bob.psk")
	if len(m.Copies) != 1 || m.Copies[0] != (Copy{From: src, To: "alice-bob.psk"}) {
		t.Errorf("Copies = %+v", m.Copies)
	}
	if notes := strings.Join(m.Notes, "\n"); !strings.Contains(notes, "copy "+src+" there") || !strings.Contains(notes, "next to Bobslap's policy file") {
		t.Errorf("notes: %s", notes)
	}
	verified, notYet, err := VerifyMirror(&alice, m, out, testLoad, time.Now())
	if !verified || notYet != nil || err != nil {
		t.Fatalf("VerifyMirror = %v, %v, %v", verified, notYet, err)
	}
}

// A mirror that does not agree with its source, or does not validate, is
// refused with the problems.
func TestVerifyMirrorRefuses(t *testing.T) {
	dir := examples(t, "alice-bob")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	out := filepath.Join(dir, "bob.toml")
	m, err := Mirror(alice.Assigned, MirrorOptions{Peer: netip.MustParseAddr("172.31.67.244"), Name: "Bobslap", OutPath: out})
	if err != nil {
		t.Fatal(err)
	}
	broken := *m
	broken.verify = []byte(strings.Replace(string(m.verify), "destination_port = 6667", "destination_port = 6669", 1))
	_, _, err = VerifyMirror(&alice, &broken, out, testLoad, time.Now())
	var me *MirrorError
	if !errors.As(err, &me) || !errors.Is(err, ErrMirrorBroken) || len(me.Problems) == 0 || !strings.Contains(err.Error(), "does not agree with") {
		t.Fatalf("a disagreeing mirror: %v", err)
	}
	broken.verify = []byte(strings.Replace(string(m.verify), `action = "negotiate"`, `action = "negotiat"`, 1))
	_, _, err = VerifyMirror(&alice, &broken, out, testLoad, time.Now())
	if !errors.As(err, &me) || me.Err == nil || !strings.Contains(err.Error(), "does not validate") {
		t.Fatalf("an invalid mirror: %v", err)
	}
}

// charon writes a certificate's DN in its own order ("O=swanmgr lab,
// CN=bob"), Go reversed: check takes them as the same identity, as
// validate does.
func TestCheckMultiPartDN(t *testing.T) {
	dir := examples(t, "alice-bob-certs")
	const dn = "O=swanmgr lab, CN=bob"
	a, _ := os.ReadFile(filepath.Join(dir, "alice.toml"))
	b, _ := os.ReadFile(filepath.Join(dir, "bob.toml"))
	aliceText := strings.Replace(string(a), `private_key = "alice.key" }`, `private_key = "alice.key", peer_id = "`+dn+`" }`, 1)
	bobText := strings.Replace(string(b), `addresses = ["172.31.67.244"]`, `addresses = ["172.31.67.244"]`+"\nid = \""+dn+"\"", 1)
	if aliceText == string(a) || bobText == string(b) {
		t.Fatal("the examples changed: the test edits nothing")
	}
	alice := load(t, filepath.Join(dir, "alice.toml"), []byte(aliceText), nil)
	bob := load(t, filepath.Join(dir, "bob.toml"), []byte(bobText), nil)
	if rep := Check([]Endpoint{alice, bob}, time.Now()); !rep.OK() {
		t.Fatalf("check: %v", rep.Problems)
	}
}

// Certificates are verified as of the clock the caller passes.
func TestCheckClock(t *testing.T) {
	dir := examples(t, "alice-bob-certs")
	alice := load(t, filepath.Join(dir, "alice.toml"), nil, nil)
	bob := load(t, filepath.Join(dir, "bob.toml"), nil, nil)
	if rep := Check([]Endpoint{alice, bob}, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); !rep.OK() {
		t.Fatalf("in 2030: %v", rep.Problems)
	}
	rep := Check([]Endpoint{alice, bob}, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC))
	if rep.OK() || !strings.Contains(rep.Problems[0].Error(), "does not trust") || !strings.Contains(rep.Problems[0].Error(), "expired") {
		t.Fatalf("in 2040 (the lab certificates end in 2036): %v", rep.Problems)
	}
}
