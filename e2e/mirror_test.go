package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/swanmgr/swanmgr/lab"
)

// Bob's file written by `swanmgr mirror` from Alice's works against
// Alice's: check agrees, every SA comes up, traffic is encrypted both ways.
func TestMirrorEstablishes(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice := l.example("alice-bob/alice.toml")
	bob := l.example("alice-bob/bob-mirror.toml")
	r := run("swanmgr", "mirror", "-f", alice, "--peer", "172.31.67.244", "--name", "Bobslap", "-o", bob)
	if r.code != 0 {
		t.Fatalf("mirror: %s", r)
	}
	if r := run("swanmgr", "validate", "-f", bob); r.code != 0 {
		t.Fatalf("validate of the mirror: %s", r)
	}
	if r := run("swanmgr", "check", alice, bob); r.code != 0 {
		t.Fatalf("check of the mirror: %s", r)
	}
	l.mustApply("alice", alice)
	l.mustApply("bob", bob)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.waitInstalled("bob", "sm-abczz-with-alicepc-1", "sm-abczz-with-alicepc-2", "sm-abczz-with-alicepc-3")
	if r := l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob"); r.code != 0 {
		t.Fatalf("initiate against the mirror: %s", r)
	}
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)
}

// The file for Bob, written into a folder of its own (as it would be for
// another computer), names the key file next to itself, never Alice's
// path, says what to copy, and names the policy after Bob; with the key
// copied as the note says, Bob's charon establishes with Alice's.
func TestMirrorIntoPeersFolder(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	alice := l.example("alice-bob/alice.toml")
	bobDir := filepath.Join(t.TempDir(), "bobslap")
	if err := os.Mkdir(bobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bob := filepath.Join(bobDir, "policy.toml")
	r := run("swanmgr", "mirror", "-f", alice, "--peer", "172.31.67.244", "--name", "Bobslap", "-o", bob)
	if r.code != 0 {
		t.Fatalf("mirror: %s", r)
	}
	text, err := os.ReadFile(bob)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`secret_file = "alice-bob.psk"`, `assign = "Bobslap's IPSec"`, `name = "Bobslap's IPSec"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("Bob's file lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), filepath.Dir(alice)) || strings.Contains(string(text), "../") {
		t.Errorf("Bob's file names a path of Alice's computer:\n%s", text)
	}
	key := filepath.Join(filepath.Dir(alice), "alice-bob.psk")
	if !strings.Contains(r.stderr, "copy "+key+" there") || !strings.Contains(r.stdout, "once the files the notes name are copied") {
		t.Errorf("mirror does not say what to copy: %s", r)
	}
	if r := run("swanmgr", "check", alice, bob); r.code == 0 {
		t.Errorf("check agrees although Bob's key is not there yet: %s", r)
	}
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bobDir, "alice-bob.psk"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run("swanmgr", "check", alice, bob); r.code != 0 {
		t.Fatalf("check with the key copied: %s", r)
	}
	l.mustApply("alice", alice)
	l.mustApply("bob", bob)
	l.waitInstalled("bob", "sm-abczz-with-alicepc-1", "sm-abczz-with-alicepc-2", "sm-abczz-with-alicepc-3")
	l.sendEncrypted("bob", "alice", 6668)
}

// Alice has rules for Bob and Eve: each mirror holds only its own rule and
// key, and all three hosts establish their SAs with Alice.
func TestMirrorAliceBobEve(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	alice := l.example("alice-bob-eve/alice.toml")
	bob, eve := l.example("alice-bob-eve/bob-mirror.toml"), l.example("alice-bob-eve/eve-mirror.toml")
	for _, m := range [][]string{{"172.31.67.244", "Bobslap", bob}, {"172.20.0.5", "Evepc", eve}} {
		if r := run("swanmgr", "mirror", "-f", alice, "--peer", m[0], "--name", m[1], "-o", m[2]); r.code != 0 {
			t.Fatalf("mirror for %s: %s", m[1], r)
		}
	}
	b, _ := os.ReadFile(bob)
	if strings.Contains(string(b), "Syslog") || strings.Contains(string(b), "alice-eve.psk") {
		t.Fatalf("Bob's mirror holds Eve's rule:\n%s", b)
	}
	if r := run("swanmgr", "check", alice, bob, eve); r.code != 0 {
		t.Fatalf("check: %s", r)
	}
	l.mustApply("alice", alice)
	l.mustApply("bob", bob)
	l.mustApply("eve", eve)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-syslog-with-eve-1")
	l.waitInstalled("eve", "sm-syslog-with-alicepc-1")
	l.sendEncrypted("alice", "bob", 6667)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildSwanmgr builds the swanmgr binary into a test folder and returns it.
func buildSwanmgr(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	out, err := exec.Command(goBin, "build", "-o", filepath.Join(dir, "swanmgr"), "../cmd/swanmgr").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// The docker lab's policies: Bob's and Eve's are what `swanmgr mirror`
// writes from Alice's, and all three agree.
func TestDockerPolicies(t *testing.T) {
	// The repository's layout (docker/policies next to examples/), with
	// key files at mode 0600.
	root := t.TempDir()
	copyExamples(t, filepath.Join(root, "examples"))
	src := filepath.Join(root, "docker", "policies")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"alice.toml", "bob.toml", "eve.toml", "alice-bob.psk", "alice-eve.psk"} {
		b, err := os.ReadFile(filepath.Join("..", "docker", "policies", f))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".psk") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(src, f), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []struct{ peer, name, owner, file string }{
		{"10.67.0.244", "Bobslap", "Bob", "bob.toml"},
		{"10.67.0.5", "Evepc", "Eve", "eve.toml"},
	} {
		out := filepath.Join(src, "new-"+m.file)
		args := []string{"swanmgr", "mirror", "-f", filepath.Join(src, "alice.toml"), "--peer", m.peer, "--name", m.name,
			"--rename", "Alice's IPSec=" + m.owner + "'s IPSec", "-o", out}
		for _, r := range map[string][]string{
			"bob.toml": {"Abczz with Bob=Abczz with Alice", "Abczz to Bob's PC=Abczz to Alice's PC"},
			"eve.toml": {"Syslog with Eve=Syslog with Alice", "Syslog to Eve's PC=Syslog from Alice's PC"},
		}[m.file] {
			args = append(args, "--rename", r)
		}
		if r := run(args...); r.code != 0 {
			t.Fatalf("mirror: %s", r)
		}
		want, _ := os.ReadFile(filepath.Join(src, m.file))
		got, _ := os.ReadFile(out)
		if string(want) != string(got) {
			t.Errorf("docker/policies/%s is not what mirror writes now; regenerate it (docs/docker.md). mirror writes:\n%s", m.file, got)
		}
	}
	r := run("swanmgr", "check", filepath.Join(src, "alice.toml"), filepath.Join(src, "bob.toml"), filepath.Join(src, "eve.toml"))
	if r.code != 0 {
		t.Fatalf("check of the docker policies: %s", r)
	}
}

// docker-compose.yml gives each service the address its policy's endpoint
// has and points it at its own policy and the shared entrypoint.
func TestDockerComposeMatchesPolicies(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, h := range []string{"alice", "bob", "eve"} {
		i := strings.Index(text, "\n  "+h+":\n")
		if i < 0 {
			t.Fatalf("docker-compose.yml has no service %s", h)
		}
		svc := text[i+1:]
		// Up to the next service or top-level key.
		first := strings.Index(svc, "\n") + 1
		if loc := regexp.MustCompile(`(?m)^ {0,2}\S`).FindStringIndex(svc[first:]); loc != nil {
			svc = svc[:first+loc[0]]
		}
		policy := filepath.Join("..", "docker", "policies", h+".toml")
		p, err := os.ReadFile(policy)
		if err != nil {
			t.Fatal(err)
		}
		addr := regexp.MustCompile(`(?m)^addresses = \["([^"]+)"\]`).FindStringSubmatch(string(p))
		if addr == nil {
			t.Fatalf("%s: no endpoint address", policy)
		}
		for _, want := range []string{"SWANMGR_HOST: " + h, "SWANMGR_POLICY: /opt/swanmgr/docker/policies/" + h + ".toml", "ipv4_address: " + addr[1]} {
			if !strings.Contains(svc, want) {
				t.Errorf("service %s lacks %q:\n%s", h, want, svc)
			}
		}
	}
	for _, f := range []string{"Dockerfile", "Dockerfile.prebuilt"} {
		df, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`ENTRYPOINT ["/opt/swanmgr/docker/entrypoint.sh"]`, "RUN sh /tmp/packages.sh", "HEALTHCHECK "} {
			if !strings.Contains(string(df), want) {
				t.Errorf("%s lacks %q (docker/entrypoint.sh is what TestDockerLab runs)", f, want)
			}
		}
	}
}
