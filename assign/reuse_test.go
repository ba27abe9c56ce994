package assign

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// policyFolder writes a folder of a base file and n peer files; the file
// of peer 0 gets port.
func policyFolder(t *testing.T, dir string, n, port int) []byte {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("00-base.toml", "assign = \"P\"\n[endpoint]\naddresses = [\"192.0.2.1\"]\n[[filter_action]]\nname = \"E\"\naction = \"negotiate\"\n")
	for i := 0; i < n; i++ {
		p := 22
		if i == 0 {
			p = port
		}
		write(fmt.Sprintf("peer-%d.toml", i), fmt.Sprintf("[[filter_list]]\nname = \"L%d\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.%d\"\nprotocol = \"tcp\"\ndestination_port = %d\n"+
			"[[policy]]\nname = \"P\"\n[[policy.rule]]\nfilter_list = \"L%d\"\nfilter_action = \"E\"\nauthentication = [{method = \"psk\", secret = \"inline-%d-Sekr1t-never-kept\"}]\n", i, 10+i, p, i, i))
	}
	write("zz-keyfile.toml", "[[filter_list]]\nname = \"K\"\n[[filter_list.filter]]\nsource = \"me\"\ndestination = \"192.0.2.200\"\n"+
		"[[policy]]\nname = \"P\"\n[[policy.rule]]\nfilter_list = \"K\"\nfilter_action = \"E\"\nauthentication = [{method = \"psk\", secret_file = \"/k\"}]\n")
	data, err := model.ReadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A folder's decoded files are kept in the state folder (0600, without
// the inline secrets of the files that have them: those are not kept),
// taken back by the next apply's read, written again only when they
// changed, ignored when damaged, and removed with the record.
func TestReuseKeptInStateFolder(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "state")}
	const sock = "/run/charon.vici"
	dir := filepath.Join(t.TempDir(), "policy.d")
	data := policyFolder(t, dir, 3, 22)

	r := s.LoadReuse(sock)
	if _, err := model.ParseWith(dir, data, r); err != nil {
		t.Fatal(err)
	}
	if _, decoded := r.Counts(); decoded != 2 {
		t.Fatalf("%d files kept; want 2 (the base and the file naming a key file, not those with inline secrets)", decoded)
	}
	if err := s.SaveReuse(sock, r)(); err != nil {
		t.Fatal(err)
	}
	p := s.path(sock, ".decoded")
	kept := keptPrivately(t, p, "kept files", "an inline secret")

	again := s.LoadReuse(sock)
	if _, err := model.ParseWith(dir, data, again); err != nil {
		t.Fatal(err)
	}
	if taken, decoded := again.Counts(); taken != 2 || decoded != 0 {
		t.Fatalf("the next read: %d taken, %d decoded; want 2, 0", taken, decoded)
	}
	st0, _ := os.Stat(p)
	if err := s.SaveReuse(sock, again)(); err != nil {
		t.Fatal(err)
	}
	if st1, _ := os.Stat(p); !os.SameFile(st0, st1) {
		t.Fatal("unchanged kept files were written again")
	}

	if err := os.WriteFile(p, kept[:len(kept)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := s.LoadReuse(sock)
	if _, err := model.ParseWith(dir, data, damaged); err != nil {
		t.Fatal(err)
	}
	if taken, decoded := damaged.Counts(); taken != 0 || decoded != 2 {
		t.Fatalf("damaged kept files: %d taken, %d decoded; want 0, 2", taken, decoded)
	}

	if err := s.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the kept files outlive the record: %v", err)
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 0 {
		t.Fatalf("state folder not empty: %v", ents)
	}
}

// The connections rendered at an apply are kept in the state folder
// (0600, no preshared key in them), taken back by the next render, not
// written again when the render took all of them, ignored when damaged,
// and removed with the record.
func TestPriorKeptInStateFolder(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "state")}
	const sock = "/run/charon.vici"
	dir := filepath.Join(t.TempDir(), "policy.d")
	renderWith := func(data []byte, p *render.Prior) *render.Result {
		t.Helper()
		a, _, err := model.ParseValidate(dir, data, model.ValidateOptions{InsecureSecrets: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := render.Render(a, render.Options{Prior: p})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	folder := func(port int) []byte {
		policyFolder(t, dir, 3, port)
		os.Remove(filepath.Join(dir, "zz-keyfile.toml")) // names a key file that is not there
		data, err := model.ReadFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	data := folder(22)
	first := s.LoadPrior(sock)
	if first.Len() != 0 {
		t.Fatalf("no record, yet %d connections kept", first.Len())
	}
	res := renderWith(data, first)
	if err := s.SavePrior(sock, first, res)(); err != nil {
		t.Fatal(err)
	}
	p := s.path(sock, ".rendered")
	kept := keptPrivately(t, p, "kept connections", "a preshared key")

	same := s.LoadPrior(sock)
	if held := same.Len(); held != len(res.Conns) {
		t.Fatalf("%d connections kept, want %d", held, len(res.Conns))
	}
	again := renderWith(data, same)
	if same.Reused() != len(res.Conns) {
		t.Fatalf("took %d of %d", same.Reused(), len(res.Conns))
	}
	st0, _ := os.Stat(p)
	if err := s.SavePrior(sock, same, again)(); err != nil {
		t.Fatal(err)
	}
	if st1, _ := os.Stat(p); !os.SameFile(st0, st1) {
		t.Fatal("connections all taken were written again")
	}

	changed := folder(2222)
	one := s.LoadPrior(sock)
	res = renderWith(changed, one)
	if one.Reused() != len(res.Conns)-1 {
		t.Fatalf("one port changed: took %d of %d", one.Reused(), len(res.Conns))
	}
	if err := s.SavePrior(sock, one, res)(); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(p); os.SameFile(st0, st2) {
		t.Fatal("a changed connection was not kept")
	}

	if err := os.WriteFile(p, kept[:len(kept)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if n := s.LoadPrior(sock).Len(); n != 0 {
		t.Fatalf("damaged kept connections: %d held", n)
	}

	if err := s.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 0 {
		t.Fatalf("state folder not empty: %v", ents)
	}
}

// keptPrivately checks that the cache file p (what) is mode 0600 and
// holds no secret (secret: what the test's secret is, for the message),
// and returns what it holds.
func keptPrivately(t *testing.T, p, what, secret string) []byte {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", what, st, err)
	}
	kept, _ := os.ReadFile(p)
	if bytes.Contains(kept, []byte("Sekr1t")) {
		t.Fatalf("%s is in the state folder", secret)
	}
	return kept
}
