package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/cli"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// optIn is the e2e opt-in: with it set, a missing prerequisite fails.
const optIn = "SWANMGR_E2E"

// requireLab skips (or, opted in, fails) unless real charon daemons can
// run here.
func requireLab(t *testing.T, b lab.Backend) {
	t.Helper()
	err := lab.Check(b)
	if err == nil {
		for _, bin := range []string{"swanctl", "tcpdump"} {
			if _, lerr := exec.LookPath(bin); lerr != nil {
				err = lerr
			}
		}
	}
	if err != nil {
		if os.Getenv(optIn) == "1" {
			t.Fatalf("%s=1 but the e2e prerequisites are missing: %v", optIn, err)
		}
		t.Skipf("no real charon here (set %s=1 to make this a failure): %v", optIn, err)
	}
}

// testLab is a lab for one test, torn down when it ends.
type testLab struct {
	*lab.Lab
	t        *testing.T
	stateDir string
	examples string
}

func randomPrefix(t *testing.T) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "e" + string(b)
}

func newLab(t *testing.T, b lab.Backend, hosts ...string) *testLab {
	t.Helper()
	l, dir := upLab(t, lab.Options{Backend: b, Hosts: hosts})
	return &testLab{Lab: l, t: t, stateDir: filepath.Join(dir, "state"), examples: copyExamples(t, filepath.Join(dir, "examples"))}
}

// upLab builds a lab (random prefix, under a test folder, which it also
// returns) and tears it down when the test ends, showing the charon logs
// of a failed test.
func upLab(t *testing.T, o lab.Options) (*lab.Lab, string) {
	t.Helper()
	requireLab(t, o.Backend)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	o.Dir, o.Prefix = filepath.Join(dir, "lab"), randomPrefix(t)
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				if b, err := os.ReadFile(h.Log); err == nil {
					t.Logf("--- %s charon.log (last lines) ---\n%s", h.Name, lastLines(string(b), 40))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l, dir
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// copyExamples copies examples/ into dst with key files at mode 0600, as
// an operator's checkout would have them (git does not keep modes).
func copyExamples(t *testing.T, dst string) string {
	t.Helper()
	src := filepath.Join("..", "examples")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".psk") || strings.HasSuffix(p, ".key") {
			mode = 0o600
		}
		return os.WriteFile(target, b, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// example returns the path of an example file in the test's copy.
func (l *testLab) example(rel string) string { return filepath.Join(l.examples, rel) }

// writeFile writes a policy or key file into the test's examples folder.
func (l *testLab) writeFile(rel, content string, mode os.FileMode) string {
	p := filepath.Join(l.examples, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// result is one swanmgr run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// swanmgr runs the command line in-process against a lab host.
func (l *testLab) swanmgr(host string, args ...string) result {
	l.t.Helper()
	h := l.Host(host)
	if h == nil {
		l.t.Fatalf("no lab host %q", host)
	}
	full := []string{"swanmgr", args[0], "--socket", h.Socket, "--state-dir", l.stateDir}
	if args[0] == "apply" || args[0] == "plan" {
		full = append(full, "--ipsec-backend", backendFor(l.Backend))
	}
	full = append(full, args[1:]...)
	return run(full...)
}

func run(args ...string) result {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cli.Run(ctx, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func backendFor(b lab.Backend) string {
	if b == lab.Kernel {
		return "kernel"
	}
	return "libipsec"
}

// mustApply applies a policy file to a host and fails the test otherwise.
func (l *testLab) mustApply(host, file string) result {
	l.t.Helper()
	r := l.swanmgr(host, "apply", "-f", file)
	if r.code != 0 {
		l.t.Fatalf("apply %s on %s: %s", file, host, r)
	}
	return r
}

// client dials a host's charon.
func (l *testLab) client(host string) *vici.Client {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := vici.Dial(ctx, l.Host(host).Socket)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// sas lists a host's SAs.
func (l *testLab) sas(host string) []vici.IKESA {
	l.t.Helper()
	c := l.client(host)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sas, err := c.ListSAs(ctx, vici.SAFilter{})
	if err != nil {
		l.t.Fatal(err)
	}
	return sas
}

// installed returns the INSTALLED CHILD_SAs of a host by child name.
func installed(sas []vici.IKESA) map[string]vici.ChildSA {
	out := map[string]vici.ChildSA{}
	for _, sa := range sas {
		for _, ch := range sa.Children {
			if ch.State == "INSTALLED" {
				out[ch.Name] = ch
			}
		}
	}
	return out
}

// waitInstalled polls until every named child is INSTALLED on host.
func (l *testLab) waitInstalled(host string, children ...string) map[string]vici.ChildSA {
	l.t.Helper()
	var got map[string]vici.ChildSA
	eventually(l.t, 20*time.Second, func() (bool, string) {
		got = installed(l.sas(host))
		var missing []string
		for _, c := range children {
			if _, ok := got[c]; !ok {
				missing = append(missing, c)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%s: CHILD_SAs not installed: %v (installed: %v)", host, missing, keys(got))
	})
	return got
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, why)
		}
		<-tick.C
	}
}

// logSince returns what a host's charon logged after offset, and the new offset.
func (l *testLab) logSince(host string, offset int64) (string, int64) {
	l.t.Helper()
	b, err := os.ReadFile(l.Host(host).Log)
	if err != nil {
		l.t.Fatal(err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:]), int64(len(b))
}
