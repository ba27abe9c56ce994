package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici"
)

// watchView is when a `status --watch -o json` view arrived and how many
// of its CHILD_SAs were installed.
type watchView struct {
	at        time.Time
	installed int
}

// BenchmarkStatusWatchEvent measures how soon `status --watch` shows a
// CHILD_SA that charon deleted or set up, with 1,000 CHILD_SAs over 4
// IKE_SAs (SWANMGR_BENCH_PEERS=20x500 for 10,000 over 20): from the
// answer to terminate (or initiate) to the first view that shows it,
// five times each, with --interval 1h so that only charon's events
// refresh. Beside it, in the same run, what `swanctl --list-sas` of
// everything takes: what each event cost when it made the watcher list
// every SA, and `swanctl --list-sas --ike-id` of the one IKE_SA: what it
// costs now. Run it with
//
//	SWANMGR_E2E=1 go test -run '^$' -bench StatusWatchEvent -benchtime 1x ./bench/
func BenchmarkStatusWatchEvent(b *testing.B) {
	statusPrereqs(b)
	bin := swanmgrBinary(b)
	peers, per := 4, 250
	if v := os.Getenv("SWANMGR_BENCH_PEERS"); v != "" {
		fmt.Sscanf(v, "%dx%d", &peers, &per)
	}
	l := upManyLab(b, bin, peers, per)
	h := l.Host("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	want := peers * per

	cmd := exec.CommandContext(ctx, bin, "status", "--watch", "--interval", "1h", "-o", "json", "--socket", h.Socket, "--state-dir", l.state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	views := make(chan watchView, 1024)
	go func() {
		defer close(views)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 256<<20)
		for sc.Scan() {
			at := time.Now()
			var st status.Status
			if json.Unmarshal(sc.Bytes(), &st) != nil {
				continue
			}
			n := 0
			for _, sa := range st.SAs {
				if sa.State == status.StateInstalled {
					n++
				}
			}
			views <- watchView{at, n}
		}
	}()
	await := func(what string, n int) time.Time {
		b.Helper()
		deadline := time.After(2 * time.Minute)
		for {
			select {
			case v, ok := <-views:
				if !ok {
					b.Fatalf("%s: the watcher stopped", what)
				}
				if v.installed == n {
					return v.at
				}
			case <-deadline:
				b.Fatalf("%s: no view with %d CHILD_SAs installed", what, n)
			}
		}
	}
	await("first view", want)

	c, err := vici.Dial(ctx, h.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var downs, ups []time.Duration
	for i := 0; i < 5; i++ {
		sas, err := c.ListSAs(ctx, vici.SAFilter{IKE: "sm-to-peer1"})
		if err != nil || len(sas) == 0 || len(sas[0].Children) == 0 {
			b.Fatalf("peer1's IKE_SA: %v, %v", sas, err)
		}
		child := sas[0].Children[0]
		if err := c.Terminate(ctx, vici.TerminateRequest{ChildID: child.UniqueID}, nil); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		downs = append(downs, await("terminate", want-1).Sub(t0))
		if err := c.Initiate(ctx, vici.InitiateRequest{Child: child.Name}, nil); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		ups = append(ups, await("initiate", want).Sub(t1))
	}
	list := run(b, h.Swanctl(ctx, "--list-sas"))
	sas, err := c.ListSAs(ctx, vici.SAFilter{IKE: "sm-to-peer1"})
	if err != nil || len(sas) == 0 {
		b.Fatalf("peer1's IKE_SA: %v, %v", sas, err)
	}
	one := run(b, h.Swanctl(ctx, "--list-sas", "--ike-id", fmt.Sprint(sas[0].UniqueID)))
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 }
	b.ReportMetric(ms(median(downs)), "deleted-shown-ms")
	b.ReportMetric(ms(median(ups)), "new-shown-ms")
	b.ReportMetric(ms(list), "swanctl-list-sas-ms")
	b.ReportMetric(ms(one), "swanctl-list-one-ike-sa-ms")
	b.Logf("%d CHILD_SAs over %d IKE_SAs: a deleted CHILD_SA showed %v after terminate answered (median of %d: %v), a new one %v after initiate answered (%v); swanctl --list-sas of everything %.0f ms",
		want, peers, median(downs).Round(time.Millisecond), len(downs), downs, median(ups).Round(time.Millisecond), ups, ms(list))
}
