package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// applyPrereqs skips (or, with SWANMGR_E2E=1, fails) without a lab.
func applyPrereqs(b *testing.B) {
	b.Helper()
	if err := lab.Check(lab.Kernel); err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			b.Fatalf("SWANMGR_E2E=1 but: %v", err)
		}
		b.Skip(err)
	}
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the binary built for the benchmarks.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// swanmgrBinary builds the swanmgr command once per run: apply is measured
// as an operator runs it, a process like swanctl.
func swanmgrBinary(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "swanmgr-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "swanmgr")
		// Built as `make build` builds it (static: CGO_ENABLED=0).
		build := exec.Command("go", "build", "-o", binPath, "../cmd/swanmgr")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binPath
}

// generatedPolicy writes a policy of n rules, each with its own peer
// (10.x.y.z) and one filter, all sharing one key file; change moves rule
// 1's port, the one-rule change.
//
// With SWANMGR_BENCH_FOLDER=1 the same policy is a folder (-f DIR): a
// base file with the endpoint and the filter action, and one file per
// peer with its filter list and rule; the change edits one peer's file.
func generatedPolicy(dir string, n int, change bool) (string, error) {
	if os.Getenv("SWANMGR_BENCH_FOLDER") == "1" {
		return generatedFolder(dir, n, change)
	}
	var b strings.Builder
	b.WriteString("assign = \"Generated\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n")
	b.WriteString("[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n\n")
	for i := 0; i < n; i++ {
		port := 22
		if change && i == 0 {
			port = 2222
		}
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.%d.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = %d\n\n",
			i, 1+i/65536, (i/256)%256, i%256, port)
	}
	b.WriteString("[[policy]]\nname = \"Generated\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Peer %d\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"bench.psk\" } ]\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.psk"), []byte("lab-only: generated-benchmark-key-5f1e2d3c\n"), 0o600); err != nil {
		return "", err
	}
	name := "policy.toml"
	if change {
		name = "policy-changed.toml"
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

// generatedFolder is generatedPolicy as a folder of n+1 files.
func generatedFolder(dir string, n int, change bool) (string, error) {
	name := "policy.d"
	if change {
		name = "policy-changed.d"
	}
	d := filepath.Join(dir, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.psk"), []byte("lab-only: generated-benchmark-key-5f1e2d3c\n"), 0o600); err != nil {
		return "", err
	}
	base := "assign = \"Generated\"\n\n[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\npfs = true\n"
	if err := os.WriteFile(filepath.Join(d, "00-base.toml"), []byte(base), 0o644); err != nil {
		return "", err
	}
	for i := 0; i < n; i++ {
		port := 22
		if change && i == 0 {
			port = 2222
		}
		text := fmt.Sprintf("[[filter_list]]\nname = \"Peer %d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.%d.%d.%d\"\n  protocol = \"tcp\"\n  destination_port = %d\n\n"+
			"[[policy]]\nname = \"Generated\"\n  [[policy.rule]]\n  name = \"Peer %d\"\n  filter_list = \"Peer %d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"../bench.psk\" } ]\n",
			i, 1+i/65536, (i/256)%256, i%256, port, i, i)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("peer-%06d.toml", i)), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	return d, nil
}

// swanctlConf renders policy for the kernel backend into dir/swanctl.conf
// for swanctl --load-all --file, with the credential folders swanctl
// reads beside its file, and returns the file's path.
func swanctlConf(b *testing.B, bin, dir, policy string) string {
	b.Helper()
	return swanctlConfFor(b, bin, dir, policy, "kernel")
}

// swanctlConfFor is swanctlConf for the IPsec backend backend.
func swanctlConfFor(b *testing.B, bin, dir, policy, backend string) string {
	b.Helper()
	for _, sub := range []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		os.Mkdir(filepath.Join(dir, sub), 0o700)
	}
	conf := filepath.Join(dir, "swanctl.conf")
	out, err := exec.Command(bin, "render", "-f", policy, "--ipsec-backend", backend, "--show-secrets").Output()
	if err != nil {
		b.Fatalf("render: %v", err)
	}
	if err := os.WriteFile(conf, out, 0o600); err != nil {
		b.Fatal(err)
	}
	return conf
}

// timed runs a command and returns its wall time and peak RSS; its output
// is kept for the error message unless cmd.Stdout is set.
func timed(b *testing.B, cmd *exec.Cmd) (time.Duration, int64) {
	b.Helper()
	var out strings.Builder
	if cmd.Stdout == nil { // else the caller's (e.g. /dev/null)
		cmd.Stdout = &out
	}
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, lastLines(out.String(), 20))
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	return d, rss
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// backAndForth applies changed and back n times, changed first (apply
// makes each command), and returns the times sorted and the highest peak
// RSS.
func backAndForth(b *testing.B, n int, apply func(file string) *exec.Cmd, changed, orig string) ([]time.Duration, int64) {
	b.Helper()
	var ones []time.Duration
	var rss int64
	for i := range n {
		file := changed
		if i%2 == 1 {
			file = orig
		}
		d, r := timed(b, apply(file))
		ones = append(ones, d)
		rss = max(rss, r)
	}
	slices.Sort(ones)
	return ones, rss
}

// benchSizes returns the rule counts to measure: def, or those listed in
// SWANMGR_BENCH_RULES (e.g. "20000" or "1000,5000,20000").
func benchSizes(b *testing.B, def ...int) []int {
	v := os.Getenv("SWANMGR_BENCH_RULES")
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("SWANMGR_BENCH_RULES=%q: %q is not a rule count", v, f)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkApply loads generated policies of 1,000 and 5,000 rules into a
// lab charon, side by side with `swanctl --load-all --file` of the same
// rendered swanctl.conf: cold load, unchanged re-load, one-rule change
// (the median of five, back and forth), and swanmgr's peak RSS of all of
// them. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench Apply -benchtime 1x ./bench/
//
// (SWANMGR_BENCH_RULES=20000 for other sizes.)
func BenchmarkApply(b *testing.B) {
	applyPrereqs(b)
	bin := swanmgrBinary(b)
	for _, n := range benchSizes(b, 1000, 5000) {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchApply(b, bin, n)
			}
		})
	}
}

func benchApply(b *testing.B, bin string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Backend: lab.Kernel, Prefix: fmt.Sprintf("bn%d", os.Getpid()%100000), Hosts: []string{"alice"}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Down()
	h := l.Host("alice")

	policy, err := generatedPolicy(dir, n, false)
	if err != nil {
		b.Fatal(err)
	}
	changed, err := generatedPolicy(dir, n, true)
	if err != nil {
		b.Fatal(err)
	}
	conf := swanctlConf(b, bin, dir, policy)

	b.StopTimer()
	swCold, _ := timed(b, h.Swanctl(ctx, "--load-all", "--file", conf))
	swReload, _ := timed(b, h.Swanctl(ctx, "--load-all", "--file", conf))

	// A fresh charon for swanmgr, as for swanctl's cold load.
	if err := h.RestartCharon(ctx); err != nil {
		b.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	apply := func(file string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, "apply", "--socket", h.Socket, "--state-dir", state, "--ipsec-backend", "kernel", "-f", file)
	}
	b.StartTimer()
	smCold, rssCold := timed(b, apply(policy))
	b.StopTimer()
	smSame, rssSame := timed(b, apply(policy))
	// The one-rule change five times, back and forth (each apply changes
	// the one rule): the median, which one slow moment of the machine
	// does not decide.
	ones, rssOne := backAndForth(b, 5, apply, changed, policy)
	smOne := ones[len(ones)/2]
	b.Logf("%d rules: one-rule changes %v", n, ones)

	rss := max(rssCold, rssSame, rssOne)
	b.ReportMetric(swCold.Seconds(), "swanctl-cold-s")
	b.ReportMetric(smCold.Seconds(), "swanmgr-cold-s")
	b.ReportMetric(smCold.Seconds()/swCold.Seconds(), "cold-ratio")
	b.ReportMetric(swReload.Seconds(), "swanctl-reload-s")
	b.ReportMetric(smSame.Seconds(), "swanmgr-unchanged-s")
	b.ReportMetric(smSame.Seconds()/swReload.Seconds(), "unchanged-ratio")
	b.ReportMetric(smOne.Seconds(), "swanmgr-one-rule-s")
	b.ReportMetric(smOne.Seconds()/swReload.Seconds(), "one-rule-ratio")
	b.ReportMetric(float64(rss)/(1<<20), "swanmgr-peak-MB")
	b.Logf("%d rules: swanctl cold %.2fs, reload %.2fs; swanmgr cold %.2fs (%.2fx), unchanged %.3fs (%.3fx), one rule %.3fs (%.3fx); peak RSS %.1f MB",
		n, swCold.Seconds(), swReload.Seconds(), smCold.Seconds(), smCold.Seconds()/swCold.Seconds(),
		smSame.Seconds(), smSame.Seconds()/swReload.Seconds(), smOne.Seconds(), smOne.Seconds()/swReload.Seconds(), float64(rss)/(1<<20))
}
