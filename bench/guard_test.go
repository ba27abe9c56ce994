package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/netfilter"
)

// guardOf derives the guard of a generated policy.
func guardOf(b *testing.B, path string) *guard.Ruleset {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	f, err := model.Parse(path, data)
	if err != nil {
		b.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rs, probs := guard.Derive(a, guard.Kernel)
	if probs != nil {
		b.Fatal(probs)
	}
	return rs
}

// BenchmarkGuard installs the guard of generated policies of 1,000 and
// 5,000 rules into a namespace of its own with the real nft, then times
// what a one-rule change costs (a patch of the live table) and a
// replacement of the whole table. Target: a one-rule change at 5,000
// rules in at most 50 ms. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench Guard -benchtime 1x ./bench/
func BenchmarkGuard(b *testing.B) {
	applyPrereqs(b)
	if _, err := exec.LookPath("nft"); err != nil {
		b.Fatalf("nft: %v", err)
	}
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			p, err := generatedPolicy(dir, n, false)
			if err != nil {
				b.Fatal(err)
			}
			q, err := generatedPolicy(dir, n, true)
			if err != nil {
				b.Fatal(err)
			}
			before, after := guardOf(b, p), guardOf(b, q)
			ns := fmt.Sprintf("bg%d", os.Getpid()%100000)
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				b.Fatalf("ip netns add: %v %s", err, out)
			}
			defer exec.Command("ip", "netns", "del", ns).Run()
			tab, err := netfilter.Open("/run/netns/" + ns)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ResetTimer()
			var full, fp time.Duration
			var ones []time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := tab.Install(ctx, nil, nil); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := tab.Install(ctx, nil, before); err != nil {
					b.Fatal(err)
				}
				full += time.Since(start)
				start = time.Now()
				if _, err := tab.Fingerprint(ctx); err != nil {
					b.Fatal(err)
				}
				fp += time.Since(start)
				b.StartTimer()
				// The one-rule change and back, a few times: the median
				// is what an operator's change costs.
				from, to := before, after
				for j := 0; j < 7; j++ {
					start = time.Now()
					if _, err := tab.Install(ctx, from, to); err != nil {
						b.Fatal(err)
					}
					ones = append(ones, time.Since(start))
					from, to = to, from
				}
			}
			b.StopTimer()
			if _, err := tab.Install(ctx, before, nil); err != nil {
				b.Fatal(err)
			}
			sort.Slice(ones, func(i, j int) bool { return ones[i] < ones[j] })
			one := ones[len(ones)/2] * time.Duration(b.N)
			per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
			b.ReportMetric(per(full), "full-install-ms")
			b.ReportMetric(per(one), "one-rule-ms")
			b.ReportMetric(per(fp), "fingerprint-ms")
			b.Logf("%d rules (%d entries): full install %.1f ms, one-rule patch %.1f ms (median, target <= 50 ms), fingerprint check %.1f ms",
				n, len(before.Entries), per(full), per(one), per(fp))
		})
	}
}
