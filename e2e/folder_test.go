package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// A policy folder (-f DIR) against a real charon: Alice's knowledge-base
// policy cut into two files renders and loads as the one file does; a
// file added, edited or with a mistake changes what it holds and nothing
// else, and names itself; the agent watching the folder takes a removed
// file's rule away and brings an added file's rule in.
func TestFolderPolicy(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	sock := l.Host("alice").Socket

	whole, err := os.ReadFile(l.example("alice-bob/alice.toml"))
	if err != nil {
		t.Fatal(err)
	}
	head, rest, ok := strings.Cut(string(whole), "[[filter_list]]")
	if !ok {
		t.Fatal("alice.toml has no [[filter_list]]")
	}
	rest = strings.ReplaceAll("[[filter_list]]"+rest, `secret_file = "alice-bob.psk"`, `secret_file = "../alice-bob/alice-bob.psk"`)
	l.writeFile("alice.d/00-alicepc.toml", head, 0o644)
	l.writeFile("alice.d/10-bob.toml", rest, 0o644)
	l.writeFile("alice.d/README", "not read: not *.toml\n", 0o644)
	dir := l.example("alice.d")

	r := l.mustApply("alice", dir)
	if !strings.Contains(r.stdout, "1 added, 0 changed, 0 removed, 0 unchanged") {
		t.Errorf("first apply of the folder:\n%s", r)
	}
	// The decoded files are kept for the next apply (which then decodes
	// only the files that changed: the edits below must still be seen).
	if kept, _ := filepath.Glob(filepath.Join(l.stateDir, "*.decoded")); len(kept) != 1 {
		t.Errorf("state folder: %v decoded-files caches, want 1", kept)
	} else if st, err := os.Stat(kept[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", kept[0], st, err)
	}
	render := func(f string) string {
		r := run("swanmgr", "render", "--ipsec-backend", "kernel", "-f", f)
		if r.code != 0 {
			t.Fatalf("render %s: %s", f, r)
		}
		_, body, _ := strings.Cut(r.stdout, "\n") // the first line names the source
		return body
	}
	if a, b := render(dir), render(l.example("alice-bob/alice.toml")); a != b {
		t.Errorf("the folder renders otherwise than alice.toml:\n%s\n---\n%s", a, b)
	}

	eve := "[[filter_list]]\nname = \"Syslog to Eve\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.20.0.5\"\n  protocol = \"udp\"\n  destination_port = 514\n" +
		"[[policy]]\nname = \"Alice's IPSec\"\n  [[policy.rule]]\n  name = \"Syslog with Eve\"\n  filter_list = \"Syslog to Eve\"\n  filter_action = \"Encrypt Abczz\"\n" +
		"  authentication = [ { method = \"psk\", secret_file = \"../alice-bob/alice-bob.psk\" } ]\n"
	l.writeFile("alice.d/20-eve.toml", eve, 0o644)
	r = l.mustApply("alice", dir)
	if !strings.Contains(r.stdout, "1 added, 0 changed, 0 removed, 1 unchanged") {
		t.Errorf("apply with 20-eve.toml added:\n%s", r)
	}
	l.writeFile("alice.d/20-eve.toml", strings.Replace(eve, "= 514", "= 1514", 1), 0o644)
	r = l.mustApply("alice", dir)
	if !strings.Contains(r.stdout, "0 added, 1 changed, 0 removed, 1 unchanged") {
		t.Errorf("apply with 20-eve.toml edited:\n%s", r)
	}

	// A mistake in one file: refused with that file's line, nothing loaded.
	before := conns(sock)
	bad := l.writeFile("alice.d/30-bad.toml", "[[policy]]\nname = \"Alice's IPSec\"\n  [[policy.rule]]\n  filter_list = \"Nope\"\n  filter_action = \"Encrypt Abczz\"\n", 0o644)
	r = l.swanmgr("alice", "apply", "-f", dir)
	if r.code != 1 || !strings.Contains(r.stderr, bad+`:4: `) || !strings.Contains(r.stderr, `filter_list "Nope" not found`) {
		t.Errorf("apply with 30-bad.toml: want exit 1 naming %s:4:\n%s", bad, r)
	}
	if after := conns(sock); !slices.Equal(after, before) {
		t.Errorf("a refused folder changed charon's connections: %v -> %v", before, after)
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}

	// The agent watches the folder: its files and the list of them.
	agent := l.startAgent(bin, "alice", dir)
	agent.waitLog(30*time.Second, 0, "agent started")
	from := len(agent.log.String())
	if err := os.Remove(l.example("alice.d/20-eve.toml")); err != nil {
		t.Fatal(err)
	}
	agent.waitLog(30*time.Second, from, `removed "Syslog with Eve"`)
	if c := conns(sock); slices.Contains(c, "sm-syslog-with-eve") || !slices.Contains(c, "sm-abczz-with-bob") {
		t.Errorf("after 20-eve.toml went, charon has %v", c)
	}
	from = len(agent.log.String())
	l.writeFile("alice.d/20-eve.toml", eve, 0o644)
	agent.waitLog(30*time.Second, from, `added "Syslog with Eve"`)
	eventually(t, 10*time.Second, func() (bool, string) {
		c := conns(sock)
		return slices.Contains(c, "sm-syslog-with-eve"), "charon's connections: " + strings.Join(c, ", ")
	})
	if err := agent.stop(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
}
