package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// agentLog collects an agent's stderr while the benchmark reads it.
type agentLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *agentLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *agentLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runAgent starts `swanmgr agent` for a lab host; stop ends it by pid.
func runAgent(b *testing.B, bin string, h *lab.Host, state, policy string) (*exec.Cmd, *agentLog, func()) {
	b.Helper()
	log := &agentLog{}
	cmd := exec.Command(bin, "agent", "--socket", h.Socket, "--state-dir", state, "-f", policy)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return cmd, log, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

// waitFor polls cond every 10 ms until it holds, at most d.
func waitFor(b *testing.B, d time.Duration, what string, cond func() bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

// connCount is how many connections charon at socket has (-1: no answer).
func connCount(socket string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := vici.Dial(ctx, socket)
	if err != nil {
		return -1
	}
	defer c.Close()
	names, err := c.Conns(ctx)
	if err != nil {
		return -1
	}
	return len(names)
}

// idleCPU measures an agent's CPU share over d, in percent of one core.
func idleCPU(b *testing.B, pid int, d time.Duration) float64 {
	b.Helper()
	t0 := time.Now()
	c0, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(d) // the measurement window itself, not a wait for a condition
	c1, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(c1-c0) / clockTicks / time.Since(t0).Seconds() * 100
}

// BenchmarkAgent measures the policy agent: its idle CPU with the
// knowledge-base policy assigned on both ends of a libipsec lab (SAs up),
// and, with a generated 1,000-rule policy on the kernel backend, how long
// after charon's socket accepts again (a restart) the whole policy is back,
// side by side with `swanctl --load-all --file` of the same rendered
// config after the same restart, plus its idle CPU there. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench Agent -benchtime 1x ./bench/
func BenchmarkAgent(b *testing.B) {
	applyPrereqs(b)
	bin := swanmgrBinary(b)
	b.Run("kb-idle", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			benchAgentIdle(b, bin)
		}
	})
	b.Run("restore-rules=1000", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			benchAgentRestore(b, bin, 1000)
		}
	})
}

func benchAgentIdle(b *testing.B, bin string) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Backend: lab.Libipsec, Prefix: fmt.Sprintf("ba%d", os.Getpid()%100000), Hosts: []string{"alice", "bob"}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Down()
	ex := filepath.Join(dir, "examples")
	os.MkdirAll(ex, 0o755)
	for _, f := range []string{"alice.toml", "bob.toml", "alice-bob.psk"} {
		data, err := os.ReadFile(filepath.Join("..", "examples", "alice-bob", f))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(ex, f), data, 0o600)
	}
	state := filepath.Join(dir, "state")
	alice, alog, stopA := runAgent(b, bin, l.Host("alice"), state, filepath.Join(ex, "alice.toml"))
	defer stopA()
	_, blog, stopB := runAgent(b, bin, l.Host("bob"), state, filepath.Join(ex, "bob.toml"))
	defer stopB()
	waitFor(b, 30*time.Second, "the agents did not assign the policies:\n"+alog.String()+blog.String(), func() bool {
		return strings.Contains(alog.String(), "applied policy") && strings.Contains(blog.String(), "applied policy")
	})
	waitFor(b, 30*time.Second, "alice's SAs did not come up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := vici.Dial(ctx, l.Host("alice").Socket)
		if err != nil {
			return false
		}
		defer c.Close()
		sas, err := c.ListSAs(ctx, vici.SAFilter{})
		n := 0
		for _, sa := range sas {
			for _, ch := range sa.Children {
				if ch.State == "INSTALLED" {
					n++
				}
			}
		}
		return err == nil && n >= 3
	})
	before := len(alog.String())
	b.StartTimer()
	pct := idleCPU(b, alice.Process.Pid, 30*time.Second)
	b.StopTimer()
	if extra := alog.String()[before:]; extra != "" {
		b.Logf("the agent logged while idle:\n%s", extra)
	}
	b.ReportMetric(pct, "idle-cpu-%")
	b.Logf("knowledge-base policy, SAs up, check every 1s: agent idle CPU %.3f %% of one core over 30 s", pct)
}

func benchAgentRestore(b *testing.B, bin string, n int) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Backend: lab.Kernel, Prefix: fmt.Sprintf("br%d", os.Getpid()%100000), Hosts: []string{"alice"}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Down()
	h := l.Host("alice")
	policy, err := generatedPolicy(dir, n, false)
	if err != nil {
		b.Fatal(err)
	}
	conf := swanctlConf(b, bin, dir, policy)

	// swanctl: a restart, then the whole file loaded by hand.
	if err := h.RestartCharon(ctx); err != nil {
		b.Fatal(err)
	}
	swStart := time.Now()
	if out, err := h.Swanctl(ctx, "--load-all", "--file", conf).CombinedOutput(); err != nil {
		b.Fatalf("swanctl --load-all: %v\n%s", err, lastLines(string(out), 10))
	}
	swLoad := time.Since(swStart)
	if err := h.RestartCharon(ctx); err != nil {
		b.Fatal(err)
	}

	state := filepath.Join(dir, "state")
	agent, alog, stop := runAgent(b, bin, h, state, policy)
	defer stop()
	waitFor(b, 5*time.Minute, "the agent did not assign the policy:\n"+alog.String(), func() bool { return connCount(h.Socket) == n })
	waitFor(b, time.Minute, "the agent did not log its apply", func() bool { return strings.Contains(alog.String(), "applied policy") })
	idle := idleCPU(b, agent.Process.Pid, 10*time.Second)

	// RestartCharon returns as soon as the new socket accepts.
	if err := h.RestartCharon(ctx); err != nil {
		b.Fatal(err)
	}
	accepted := time.Now()
	b.StartTimer()
	back := waitFor(b, 5*time.Minute, "the agent did not restore the policy:\n"+alog.String(), func() bool { return connCount(h.Socket) == n })
	b.StopTimer()
	restore := back.Sub(accepted)
	b.ReportMetric(restore.Seconds(), "agent-restore-s")
	b.ReportMetric(swLoad.Seconds(), "swanctl-load-all-s")
	b.ReportMetric(idle, "idle-cpu-%")
	b.Logf("%d rules: policy back %.2fs after charon's socket accepted again (swanctl --load-all of the same config: %.2fs); agent idle CPU %.2f %% of one core", n, restore.Seconds(), swLoad.Seconds(), idle)
}
