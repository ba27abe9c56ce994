package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// statusPrereqs skips (or, with SWANMGR_E2E=1, fails) without a lab that
// can carry ESP (libipsec).
func statusPrereqs(b *testing.B) {
	b.Helper()
	if err := lab.Check(lab.Libipsec); err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			b.Fatalf("SWANMGR_E2E=1 but: %v", err)
		}
		b.Skip(err)
	}
}

// bulkPolicies writes Alice's and Bob's sides of one rule with n filters
// (TCP to Bob's ports 10000, 10001, ...): one connection whose n children
// are n CHILD_SAs of one IKE_SA.
func bulkPolicies(dir string, n int) (alice, bob string, err error) {
	if err := os.WriteFile(filepath.Join(dir, "bulk.psk"), []byte("lab-only: bulk-status-benchmark-key-7a1c\n"), 0o600); err != nil {
		return "", "", err
	}
	write := func(name, me, peer string, mine bool) (string, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "assign = \"Bulk\"\n[endpoint]\nname = %q\naddresses = [%q]\n\n[[filter_list]]\nname = \"Bulk\"\n", name, me)
		for i := 0; i < n; i++ {
			src, dst := "me", peer
			if !mine {
				src, dst = peer, "me"
			}
			fmt.Fprintf(&b, "  [[filter_list.filter]]\n  source = %q\n  destination = %q\n  protocol = \"tcp\"\n  destination_port = %d\n", src, dst, 10000+i)
		}
		b.WriteString("\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\n\n[[policy]]\nname = \"Bulk\"\n")
		b.WriteString("  [[policy.rule]]\n  name = \"Bulk\"\n  filter_list = \"Bulk\"\n  filter_action = \"Encrypt\"\n")
		b.WriteString("  authentication = [ { method = \"psk\", secret_file = \"bulk.psk\" } ]\n")
		p := filepath.Join(dir, name+".toml")
		return p, os.WriteFile(p, []byte(b.String()), 0o644)
	}
	if alice, err = write("alice", "172.16.98.231", "172.31.67.244", true); err != nil {
		return "", "", err
	}
	bob, err = write("bob", "172.31.67.244", "172.16.98.231", false)
	return alice, bob, err
}

// statusLab is a lab where Alice has n CHILD_SAs with Bob, all of one
// rule of swanmgr's policy.
type statusLab struct {
	*lab.Lab
	state string
	// files are the policies written for the lab's hosts, by name
	// (BenchmarkStatusMany's).
	files map[string]string
}

func upStatusLab(b *testing.B, bin string, n int) *statusLab {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Backend: lab.Libipsec,
		Prefix: fmt.Sprintf("bs%d", os.Getpid()%100000), Hosts: []string{"alice", "bob"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Down(); err != nil {
			b.Errorf("lab down: %v", err)
		}
	})
	sl := &statusLab{Lab: l, state: filepath.Join(dir, "state")}
	alice, bob, err := bulkPolicies(dir, n)
	if err != nil {
		b.Fatal(err)
	}
	apply := func(host, file string) {
		cmd := exec.CommandContext(ctx, bin, "apply", "--socket", l.Host(host).Socket, "--state-dir", sl.state, "--ipsec-backend", "libipsec", "-f", file)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("apply on %s: %v\n%s", host, err, out)
		}
	}
	// Bob first: his own attempt fails (Alice knows nothing yet), so only
	// Alice's start action sets the SAs up, as n children of one IKE_SA.
	apply("bob", bob)
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	apply("alice", alice)
	c, err := vici.Dial(ctx, l.Host("alice").Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for {
		sas, err := c.ListSAs(ctx, vici.SAFilter{})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for _, sa := range sas {
			for _, ch := range sa.Children {
				if ch.State == "INSTALLED" {
					got++
				}
			}
		}
		if got >= n {
			b.Logf("%d CHILD_SAs installed in %.1f s (start_action = start, one IKE_SA)", got, time.Since(start).Seconds())
			return sl
		}
		if ctx.Err() != nil {
			b.Fatalf("only %d of %d CHILD_SAs installed", got, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// run times one command, its output discarded: written to /dev/null
// directly, as an operator's redirection would, not copied through a pipe
// by this process.
func run(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	cmd.Stdout = null
	var errb strings.Builder
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.String())
	}
	return time.Since(start)
}

// BenchmarkStatus times `swanmgr status` (table and JSON) against
// `swanctl --list-sas` on a charon with 1,000 CHILD_SAs, interleaved in
// the same run, each as the process an operator starts. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench Status -benchtime 20x ./bench/
func BenchmarkStatus(b *testing.B) {
	statusPrereqs(b)
	bin := swanmgrBinary(b)
	const n = 1000
	l := upStatusLab(b, bin, n)
	h := l.Host("alice")
	ctx := context.Background()
	status := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, append([]string{"status", "--socket", h.Socket, "--state-dir", l.state}, args...)...)
	}
	// Warm both up (page cache, charon's first listing).
	run(b, h.Swanctl(ctx, "--list-sas"))
	run(b, status())
	b.Run(fmt.Sprintf("children=%d", n), func(b *testing.B) {
		var sw, sm, smj time.Duration
		for i := 0; i < b.N; i++ {
			sw += run(b, h.Swanctl(ctx, "--list-sas"))
			sm += run(b, status())
			smj += run(b, status("-o", "json"))
		}
		per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
		b.ReportMetric(per(sw), "swanctl-ms")
		b.ReportMetric(per(sm), "swanmgr-ms")
		b.ReportMetric(per(smj), "swanmgr-json-ms")
		b.ReportMetric(sm.Seconds()/sw.Seconds(), "ratio")
		b.ReportMetric(smj.Seconds()/sw.Seconds(), "json-ratio")
		b.Logf("%d CHILD_SAs, %d runs each: swanctl --list-sas %.1f ms, swanmgr status %.1f ms (%.2fx), -o json %.1f ms (%.2fx)",
			n, b.N, per(sw), per(sm), sm.Seconds()/sw.Seconds(), per(smj), smj.Seconds()/sw.Seconds())
	})
}

// cpuTicks reads a process's user + system time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	// utime, stime, and cutime, cstime: the children it waited for (the
	// nft that --watch runs to read the guard's counters) count too.
	var sum int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14-17
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
		}
		sum += v
	}
	return sum, nil
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// BenchmarkStatusWatchIdle runs `swanmgr status --watch` (interval 1 s,
// output to a file, not a terminal) against an idle charon and reads its
// CPU time from /proc/PID/stat over 20 s, for the knowledge-base setup (3
// CHILD_SAs) and for 1,000 CHILD_SAs. charon's own CPU in the same window
// is reported beside it: it answers every refresh. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench StatusWatchIdle -benchtime 1x ./bench/
func BenchmarkStatusWatchIdle(b *testing.B) {
	statusPrereqs(b)
	bin := swanmgrBinary(b)
	window := idleWindowLength()
	for _, n := range []int{3, 1000} {
		b.Run(fmt.Sprintf("children=%d", n), func(b *testing.B) {
			l := upStatusLab(b, bin, n)
			h := l.Host("alice")
			// One measurement of the window whatever b.N (-benchtime 40x
			// for BenchmarkStatus must not make this 40 windows).
			w := watchIdle(b, bin, h.Socket, l.state, h.Pid, 2*time.Second, window)
			b.ReportMetric(w.swanmgr, "watch-cpu-%")
			b.ReportMetric(w.charon, "charon-cpu-%")
			b.Logf("%d CHILD_SAs: swanmgr status --watch used %.2f%% CPU over %.0f s (%d ticks), charon %.2f%%; %d bytes of output",
				n, w.swanmgr, w.seconds, w.ticks, w.charon, w.output)
		})
	}
}

// idleWindowLength is how long an idle watch is measured: 60 s, or
// SWANMGR_IDLE_WINDOW. A watch lists every SA at least every 30 s even
// when nothing moved, so a shorter window may hold no such listing, or
// one out of proportion.
func idleWindowLength() time.Duration {
	if s := os.Getenv("SWANMGR_IDLE_WINDOW"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return 60 * time.Second
}

// idleWindow is what `status --watch` and charon used of the CPU while
// nothing happened.
type idleWindow struct {
	swanmgr, charon float64 // percent of one CPU
	seconds         float64
	ticks           uint64
	output          int64 // bytes the watcher wrote
}

// watchIdle runs `swanmgr status --watch --interval 1s` against the charon
// at socket (process charonPid), output to a file (not a terminal), and
// reads its CPU time, and charon's, from /proc over window, after settle
// (start-up and the first views).
func watchIdle(b *testing.B, bin, socket, state string, charonPid int, settle, window time.Duration) idleWindow {
	b.Helper()
	out, err := os.Create(filepath.Join(b.TempDir(), "watch.out"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "status", "--watch", "--interval", "1s", "--socket", socket, "--state-dir", state)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	time.Sleep(settle)
	t0, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	c0, _ := cpuTicks(charonPid)
	wall := time.Now()
	time.Sleep(window)
	t1, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
	c1, _ := cpuTicks(charonPid)
	elapsed := time.Since(wall).Seconds()
	var size int64
	if st, err := out.Stat(); err == nil {
		size = st.Size()
	}
	return idleWindow{
		swanmgr: float64(t1-t0) / clockTicks / elapsed * 100,
		charon:  float64(c1-c0) / clockTicks / elapsed * 100,
		seconds: elapsed, ticks: uint64(t1 - t0), output: size,
	}
}
