package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// manyPolicies writes Alice's policy of one rule per peer, each with per
// filters (TCP to the peer's ports 10000, 10001, ...), and each peer's
// mirror of its rule: one connection, and so one IKE_SA, per peer.
func manyPolicies(dir, alice string, peers []string, addrs map[string]string, per int) (map[string]string, error) {
	if err := os.WriteFile(filepath.Join(dir, "many.psk"), []byte("lab-only: many-peers-status-benchmark-key-3e9d\n"), 0o600); err != nil {
		return nil, err
	}
	files := map[string]string{}
	write := func(host, file string, lists []string, rules []string) error {
		var b strings.Builder
		fmt.Fprintf(&b, "assign = \"Many\"\n[endpoint]\nname = %q\naddresses = [%q]\n\n", host, addrs[host])
		b.WriteString(strings.Join(lists, ""))
		b.WriteString("\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\n\n[[policy]]\nname = \"Many\"\n")
		b.WriteString(strings.Join(rules, ""))
		p := filepath.Join(dir, file+".toml")
		files[file] = p
		return os.WriteFile(p, []byte(b.String()), 0o644)
	}
	list := func(name, src, dst string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "[[filter_list]]\nname = %q\n", name)
		for i := 0; i < per; i++ {
			fmt.Fprintf(&b, "  [[filter_list.filter]]\n  source = %q\n  destination = %q\n  protocol = \"tcp\"\n  destination_port = %d\n", src, dst, 10000+i)
		}
		return b.String()
	}
	rule := func(name string) string {
		return fmt.Sprintf("  [[policy.rule]]\n  name = %q\n  filter_list = %q\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"many.psk\" } ]\n", name, name)
	}
	var lists, rules []string
	for _, p := range peers {
		name := "To " + p
		lists = append(lists, list(name, "me", addrs[p]))
		rules = append(rules, rule(name))
		if err := write(p, p, []string{list(name, addrs[alice], "me")}, []string{rule(name)}); err != nil {
			return nil, err
		}
	}
	// Alice's first half of the peers (alice-half), then all of them.
	half := (len(peers) + 1) / 2
	if err := write(alice, alice+"-half", lists[:half], rules[:half]); err != nil {
		return nil, err
	}
	return files, write(alice, alice, lists, rules)
}

// upManyLab is a lab where Alice has per CHILD_SAs with each of peers
// hosts (libipsec): peers IKE_SAs, peers*per CHILD_SAs in all.
func upManyLab(b *testing.B, bin string, peers, per int) *statusLab {
	b.Helper()
	// charon's libipsec sets the last of 10,000 CHILD_SAs up slower than
	// the first (its policies are looked up one after the other): in two
	// halves (below) about 2.5 minutes on a slow machine.
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Minute)
	defer cancel()
	dir := b.TempDir()
	hosts := []string{"alice"}
	var names []string
	for i := 1; i <= peers; i++ {
		names = append(names, fmt.Sprintf("peer%d", i))
	}
	hosts = append(hosts, names...)
	l, err := lab.Up(ctx, lab.Options{Dir: filepath.Join(dir, "lab"), Backend: lab.Libipsec,
		Prefix: fmt.Sprintf("bm%d", os.Getpid()%100000), Hosts: hosts})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Down(); err != nil {
			b.Errorf("lab down: %v", err)
		}
	})
	addrs := map[string]string{}
	for _, h := range hosts {
		addrs[h] = l.Host(h).Addr.String()
	}
	files, err := manyPolicies(dir, "alice", names, addrs, per)
	if err != nil {
		b.Fatal(err)
	}
	sl := &statusLab{Lab: l, state: filepath.Join(dir, "state"), files: files}
	apply := func(host, file string) error {
		cmd := exec.CommandContext(ctx, bin, "apply", "--socket", l.Host(host).Socket, "--state-dir", sl.state, "--ipsec-backend", "libipsec", "-f", files[file])
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apply on %s: %v\n%s", host, err, out)
		}
		return nil
	}
	// The peers first, in parallel: their own attempts fail (Alice knows
	// nothing yet), so only Alice's start actions set the SAs up.
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, p := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := apply(p, p); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	// Their attempts over before Alice's policy goes in (an IKE_SA_INIT
	// still on its way would find it and bring the peer's own SAs up too).
	for _, p := range names {
		waitNoSAs(ctx, b, l.Host(p).Socket, p)
	}
	c, err := vici.Dial(ctx, l.Host("alice").Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Alice's policy goes in in two halves, as an operator adds peers:
	// with all twenty at once, charon (16 threads, kept busy installing
	// libipsec's SAs for the first peers) lost the IKE_AUTH answers of the
	// last two, every time, and its start action does not try again.
	half := (peers + 1) / 2
	start := time.Now()
	for _, step := range []struct {
		file      string
		ikes, sas int
	}{{"alice-half", half, half * per}, {"alice", peers, peers * per}} {
		if err := apply("alice", step.file); err != nil {
			b.Fatal(err)
		}
		waitSAs(ctx, b, c, step.ikes, step.sas, start)
	}
	return sl
}

// waitNoSAs waits until the charon on socket (host's) has no IKE_SA.
func waitNoSAs(ctx context.Context, b *testing.B, socket, host string) {
	b.Helper()
	c, err := vici.Dial(ctx, socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for {
		list, err := c.ListSAs(ctx, vici.SAFilter{})
		if err != nil {
			b.Fatal(err)
		}
		if len(list) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%s's own attempt is still there: %d IKE_SAs", host, len(list))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitSAs waits until charon has ikes IKE_SAs established and sas
// CHILD_SAs installed. A listing of thousands of CHILD_SAs takes charon
// seconds (libipsec's statistics), time the SAs being set up wait for: it
// lists again only after twice as long as the last listing took.
func waitSAs(ctx context.Context, b *testing.B, c *vici.Client, ikes, sas int, start time.Time) {
	b.Helper()
	logged := time.Now()
	for {
		t := time.Now()
		list, err := c.ListSAs(ctx, vici.SAFilter{})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(t)
		gotIKE, got := 0, 0
		for _, sa := range list {
			if sa.State == "ESTABLISHED" {
				gotIKE++
			}
			for _, ch := range sa.Children {
				if ch.State == "INSTALLED" {
					got++
				}
			}
		}
		if got >= sas && gotIKE >= ikes {
			b.Logf("%d CHILD_SAs of %d IKE_SAs installed after %.1f s (start_action = start)", got, gotIKE, time.Since(start).Seconds())
			return
		}
		if time.Since(logged) > 10*time.Second {
			b.Logf("after %.0f s: %d of %d CHILD_SAs, %d of %d IKE_SAs", time.Since(start).Seconds(), got, sas, gotIKE, ikes)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			b.Fatalf("only %d of %d CHILD_SAs (%d of %d IKE_SAs) installed", got, sas, gotIKE, ikes)
		case <-time.After(max(500*time.Millisecond, 2*took)):
		}
	}
}

// BenchmarkStatusMany times `swanmgr status` (table and JSON) against
// `swanctl --list-sas` on a charon with 10,000 CHILD_SAs spread over 20
// IKE_SAs (one per peer), interleaved in the same run, reads the CPU
// `status --watch --interval 1s` uses while nothing happens there, and
// times a one-rule change there against swanctl's reload. About ten
// minutes, a quarter of it setting the SAs up:
//
//	SWANMGR_E2E=1 go test -run '^$' -bench StatusMany -benchtime 10x ./bench/
//
// (-bench 'StatusMany/one-rule-change' -benchtime 1x for the change alone,
// after the set-up.)
func BenchmarkStatusMany(b *testing.B) {
	statusPrereqs(b)
	bin := swanmgrBinary(b)
	peers, per := 20, 500
	if v := os.Getenv("SWANMGR_BENCH_PEERS"); v != "" { // for a smaller try
		fmt.Sscanf(v, "%dx%d", &peers, &per)
	}
	l := upManyLab(b, bin, peers, per)
	h := l.Host("alice")
	ctx := context.Background()
	status := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, append([]string{"status", "--socket", h.Socket, "--state-dir", l.state}, args...)...)
	}
	run(b, h.Swanctl(ctx, "--list-sas"))
	run(b, status())
	b.Run(fmt.Sprintf("children=%d", peers*per), func(b *testing.B) {
		var sw, sm, smj time.Duration
		for i := 0; i < b.N; i++ {
			sw += run(b, h.Swanctl(ctx, "--list-sas"))
			sm += run(b, status())
			smj += run(b, status("-o", "json"))
		}
		ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
		b.ReportMetric(ms(sw), "swanctl-ms")
		b.ReportMetric(ms(sm), "swanmgr-ms")
		b.ReportMetric(ms(smj), "swanmgr-json-ms")
		b.ReportMetric(sm.Seconds()/sw.Seconds(), "ratio")
		b.ReportMetric(smj.Seconds()/sw.Seconds(), "json-ratio")
		b.Logf("%d CHILD_SAs over %d IKE_SAs, %d runs each: swanctl --list-sas %.1f ms, swanmgr status %.1f ms (%.2fx), -o json %.1f ms (%.2fx)",
			peers*per, peers, b.N, ms(sw), ms(sm), sm.Seconds()/sw.Seconds(), ms(smj), smj.Seconds()/sw.Seconds())
	})

	// --watch, idle (as BenchmarkStatusWatchIdle), once its first view,
	// which takes charon seconds at this size, is out.
	b.Run("watch-idle", func(b *testing.B) {
		w := watchIdle(b, bin, h.Socket, l.state, h.Pid, 15*time.Second, idleWindowLength())
		b.ReportMetric(w.swanmgr, "watch-cpu-%")
		b.ReportMetric(w.charon, "charon-cpu-%")
		b.Logf("%d CHILD_SAs: swanmgr status --watch used %.2f%% CPU over %.0f s, charon %.2f%%", peers*per, w.swanmgr, w.seconds, w.charon)
	})

	// A one-rule change at a gateway with all those SAs up: one filter of
	// the first peer's rule moves to another port (one of its CHILD_SAs
	// changes), and back, four times; against swanctl's reload of the
	// same configuration. The change tears down the changed child's SA,
	// which it finds among that peer's SAs. Last: the changed child's SA
	// stays down while Alice has the other port (the peer refuses it).
	b.Run("one-rule-change", func(b *testing.B) {
		orig := l.files["alice"]
		text, err := os.ReadFile(orig)
		if err != nil {
			b.Fatal(err)
		}
		last := fmt.Sprintf("destination_port = %d\n", 10000+per-1)
		if !strings.Contains(string(text), last) {
			b.Fatalf("%s has no %q", orig, last)
		}
		changed := filepath.Join(filepath.Dir(orig), "alice-changed.toml")
		if err := os.WriteFile(changed, []byte(strings.Replace(string(text), last, "destination_port = 20000\n", 1)), 0o644); err != nil {
			b.Fatal(err)
		}
		conf := swanctlConfFor(b, bin, b.TempDir(), orig, "libipsec")
		apply := func(file string) *exec.Cmd {
			return exec.CommandContext(ctx, bin, "apply", "--socket", h.Socket, "--state-dir", l.state, "--ipsec-backend", "libipsec", "-f", file)
		}
		for i := 0; i < b.N; i++ {
			sw, _ := timed(b, h.Swanctl(ctx, "--load-all", "--file", conf))
			ones, _ := backAndForth(b, 4, apply, changed, orig)
			one := (ones[1] + ones[2]) / 2
			b.ReportMetric(sw.Seconds(), "swanctl-reload-s")
			b.ReportMetric(one.Seconds(), "swanmgr-one-rule-s")
			b.ReportMetric(one.Seconds()/sw.Seconds(), "one-rule-ratio")
			b.Logf("%d CHILD_SAs over %d IKE_SAs: swanctl --load-all (reload) %.2fs; swanmgr one-rule changes %v (median %.3fs, %.3fx)",
				peers*per, peers, sw.Seconds(), ones, one.Seconds(), one.Seconds()/sw.Seconds())
		}
	})
}
