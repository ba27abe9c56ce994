package bench

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkRender runs `swanmgr validate` and `swanmgr render` of the
// generated policies of the Apply benchmark, 1,000 to 20,000 rules, as an
// operator runs them (output to /dev/null), and reports wall time and peak
// RSS; the median of five runs each. No charon is needed:
//
//	go test -run '^$' -bench Render -benchtime 1x ./bench/
func BenchmarkRender(b *testing.B) {
	bin := swanmgrBinary(b)
	for _, n := range []int{1000, 5000, 10000, 20000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			policy, err := generatedPolicy(dir, n, false)
			if err != nil {
				b.Fatal(err)
			}
			devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer devnull.Close()
			for i := 0; i < b.N; i++ {
				for _, cmd := range []string{"validate", "render"} {
					var ds []time.Duration
					var peak int64
					for range 5 {
						c := exec.Command(bin, cmd, "-f", policy, "--ipsec-backend", "kernel")
						c.Stdout = devnull
						d, rss := timed(b, c)
						ds = append(ds, d)
						peak = max(peak, rss)
					}
					med := median(ds)
					b.ReportMetric(med.Seconds(), cmd+"-s")
					b.ReportMetric(float64(peak)/(1<<20), cmd+"-peak-MB")
					b.Logf("%d rules: %s %.3fs (median of 5), peak RSS %.1f MB", n, cmd, med.Seconds(), float64(peak)/(1<<20))
				}
			}
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
