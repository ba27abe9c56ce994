package netfilter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/netfilter"
)

// netns makes a network namespace for one test (root and nft needed;
// with SWANMGR_E2E=1 their absence fails the test).
// openTable is the guard's table in a namespace of the test's own, closed
// when the test ends.
func openTable(t *testing.T) (string, *netfilter.Table) {
	t.Helper()
	ns := netns(t)
	tab, err := netfilter.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return ns, tab
}

func netns(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("nft")
	if err == nil && os.Geteuid() != 0 {
		err = os.ErrPermission
	}
	if err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			t.Fatalf("SWANMGR_E2E=1 but nftables cannot be tested here: %v", err)
		}
		t.Skipf("needs root and nft: %v", err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "smnf" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

func ruleset(counter string, port string, v guard.Verdict) *guard.Ruleset {
	return &guard.Ruleset{Format: guard.Format, Backend: guard.LibIPsec,
		Rules: []guard.Rule{{Name: "R", Counter: counter, Verdict: v}},
		Entries: []guard.Entry{
			{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", "172.31.67.244", "6", port}, Verdict: v, Counter: counter},
			{Family: 4, Shape: "4-s32-d32-p-sp-i", Key: []string{"172.31.67.244", "172.16.98.231", "6", port}, Verdict: v, Counter: counter},
			{Family: 6, Shape: "6-s128-d0-o", Key: []string{"2001:db8::1"}, Verdict: guard.Pass},
			{Family: 4, Shape: "4-s24-d0-p-i", Key: []string{"10.1.2.0/24", "17"}, Verdict: guard.Pass},
		}}
}

// Against the real nft in a namespace of its own: install, patch,
// fingerprint, counters, remove; a table swanmgr did not make stays
// byte for byte as it was.
func TestIntegrationTable(t *testing.T) {
	ns := netns(t)
	other := "table ip other {\n\tchain c {\n\t\ttype filter hook output priority 10; policy accept;\n\t\tip daddr 10.9.9.9 counter drop\n\t}\n}\n"
	f, _ := os.CreateTemp(t.TempDir(), "other")
	f.WriteString(other)
	f.Close()
	nft(t, ns, "-f", f.Name())
	before := nft(t, ns, "list", "table", "ip", "other")

	tab, err := netfilter.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if fp, err := tab.Fingerprint(ctx); err != nil || fp != "" {
		t.Fatalf("fingerprint of no table: %q, %v", fp, err)
	}
	a := ruleset("r-r", "6667", guard.Negotiate)
	if changed, err := tab.Install(ctx, nil, a); err != nil || !changed {
		t.Fatalf("install: %v %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("fingerprint %q, want %q", fp, a.Hash())
	}
	listing := nft(t, ns, "list", "table", "inet", "swanmgr")
	for _, want := range []string{"172.16.98.231 . 172.31.67.244 . tcp . 6667 : continue", `oifname "ipsec0" accept`, `172.16.98.231 . 172.31.67.244 . tcp . 6667 counter packets 0 bytes 0 comment "r-r"`} {
		if !strings.Contains(listing, want) {
			t.Errorf("table lacks %q:\n%s", want, listing)
		}
	}
	if changed, err := tab.Install(ctx, a, a); err != nil || changed {
		t.Errorf("same ruleset again: changed %v, %v", changed, err)
	}
	b := ruleset("r-r2", "6668", guard.Block)
	if changed, err := tab.Install(ctx, a, b); err != nil || !changed {
		t.Fatalf("patch: %v %v", changed, err)
	}
	listing = nft(t, ns, "list", "table", "inet", "swanmgr")
	if strings.Contains(listing, "6667") || !strings.Contains(listing, "6668 : goto b-4-s32-d32-p-dp-o") || strings.Contains(listing, `"r-r"`) {
		t.Errorf("after patch:\n%s", listing)
	}
	cs, err := tab.Counters(ctx)
	if err != nil || len(cs) != 1 {
		t.Errorf("counters %v, %v", cs, err)
	}
	if _, ok := cs["r-r2"]; !ok {
		t.Errorf("counters %v lack r-r2", cs)
	}
	if changed, err := tab.Install(ctx, b, nil); err != nil || !changed {
		t.Fatalf("remove: %v %v", changed, err)
	}
	if out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "swanmgr") {
		t.Errorf("table still there: %s", out)
	}
	if after := nft(t, ns, "list", "table", "ip", "other"); after != before {
		t.Errorf("another table changed:\n%s\nwas\n%s", after, before)
	}
}

// nft's set-up (knftables checks nft on the first change) is tried again
// after it failed: an agent started before nftables worked must not stay
// without its guard. Reads need no nft at all.
func TestIntegrationSetUpIsRetried(t *testing.T) {
	_, tab := openTable(t)
	ctx := context.Background()
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir()) // no nft for a moment
	a := ruleset("r-r", "6667", guard.Negotiate)
	if _, err := tab.Install(ctx, nil, a); !errors.Is(err, netfilter.ErrNoNftables) {
		t.Fatalf("install without nft: %v, want ErrNoNftables", err)
	}
	if fp, err := tab.Fingerprint(ctx); err != nil || fp != "" {
		t.Fatalf("fingerprint without nft (over netlink): %q, %v", fp, err)
	}
	os.Setenv("PATH", path)
	if changed, err := tab.Install(ctx, nil, a); err != nil || !changed {
		t.Fatalf("install once nft is back: %v, %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("fingerprint %q, want %q", fp, a.Hash())
	}
	if changed, err := tab.Install(ctx, a, nil); err != nil || !changed {
		t.Fatalf("remove: %v, %v", changed, err)
	}
}

// A VICI socket served by something other than charon (here this test
// process, as a relay such as socat would) is refused by name: the guard
// would go into that process's namespace, not charon's. Before, the
// relay's namespace was taken and the apply reported a guard it had put
// where charon's traffic never passes.
func TestCharonNetnsRefusesARelay(t *testing.T) {
	sock := t.TempDir() + "/charon.vici"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	comm, _ := os.ReadFile("/proc/self/comm")
	_, err = netfilter.CharonNetns(sock)
	if err == nil || !strings.Contains(err.Error(), "not charon") || !strings.Contains(err.Error(), strings.TrimSpace(string(comm))) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("CharonNetns on a socket this test serves: %v; want a refusal naming the process and the socket", err)
	}
}

// A guard table flushed or edited by hand keeps its fingerprint set (nft
// flush table empties only the chains), so the fingerprint alone said
// "as installed" while the table passed everything. Against the real
// nft: such a table reads Altered, and the next install replaces it.
func TestIntegrationAlteredTableIsReplaced(t *testing.T) {
	ns, tab := openTable(t)
	ctx := context.Background()
	for _, backend := range []guard.Backend{guard.LibIPsec, guard.Kernel} {
		t.Run(string(backend), func(t *testing.T) { alteredIsReplaced(t, ctx, ns, tab, backend) })
	}
}

func alteredIsReplaced(t *testing.T, ctx context.Context, ns string, tab *netfilter.Table, backend guard.Backend) {
	a := ruleset("r-r", "6667", guard.Negotiate)
	a.Backend = backend
	for _, hand := range [][]string{
		{"flush", "table", "inet", "swanmgr"},
		{"flush", "chain", "inet", "swanmgr", "output"},
		{"flush", "chain", "inet", "swanmgr", "b-4-s32-d32-p-dp-o"},
		{"insert", "rule", "inet", "swanmgr", "o-4-s32-d32-p-dp-o", "accept"},
	} {
		if _, err := tab.Install(ctx, nil, a); err != nil {
			t.Fatal(err)
		}
		if fp, err := tab.Fingerprint(ctx); err != nil || fp != a.Hash() {
			t.Fatalf("installed: fingerprint %q, %v; want %q", fp, err, a.Hash())
		}
		want := nft(t, ns, "list", "table", "inet", "swanmgr")
		nft(t, ns, hand...)
		if fp, err := tab.Fingerprint(ctx); err != nil || fp != netfilter.Altered {
			t.Fatalf("after nft %v: fingerprint %q, %v; want %q", hand, fp, err, netfilter.Altered)
		}
		if changed, err := tab.Install(ctx, a, a); err != nil || !changed {
			t.Fatalf("after nft %v: install changed %v, %v; want the table replaced", hand, changed, err)
		}
		if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
			t.Fatalf("after nft %v and install: fingerprint %q", hand, fp)
		}
		if got := nft(t, ns, "list", "table", "inet", "swanmgr"); got != want {
			t.Errorf("after nft %v and install: table\n%s\nwant\n%s", hand, got, want)
		}
		if _, err := tab.Install(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A change made ready (PrepareInstall) and sent later: sent as it was made
// when the table is still what was read; when the table changed in
// between, the patch fails whole (it deletes the fingerprint it patches
// from) and the table is replaced instead, so it ends as asked either way.
func TestIntegrationPreparedInstall(t *testing.T) {
	ns, tab := openTable(t)
	ctx := context.Background()
	a, b, c := ruleset("r-a", "6667", guard.Negotiate), ruleset("r-b", "6668", guard.Negotiate), ruleset("r-c", "6669", guard.Block)
	if _, err := tab.Install(ctx, nil, a); err != nil {
		t.Fatal(err)
	}
	run, err := tab.PrepareInstall(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("made ready, not sent: fingerprint %q, want a's %q", fp, a.Hash())
	}
	if changed, err := run(ctx); err != nil || !changed {
		t.Fatalf("sent: %v %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != b.Hash() {
		t.Fatalf("sent: fingerprint %q, want b's %q", fp, b.Hash())
	}
	want := nft(t, ns, "list", "table", "inet", "swanmgr")

	// Made ready from b, but the table becomes c before it is sent.
	sentOverChangedTable(t, ctx, ns, tab, tab.PrepareInstall, a, b, c)
	if _, err := tab.Install(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "table", "inet", "swanmgr"); got != want {
		t.Errorf("b again:\n%s\nwant\n%s", got, want)
	}
	if _, err := tab.Install(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
}

// A change made from the table just installed (PrepareFrom), without
// reading it: a patch when the table is still that, and when someone
// changed it in between, the table replaced whole, ending as asked.
func TestIntegrationPreparedFrom(t *testing.T) {
	ns, tab := openTable(t)
	ctx := context.Background()
	a, b, c := ruleset("r-a", "6667", guard.Negotiate), ruleset("r-b", "6668", guard.Negotiate), ruleset("r-c", "6669", guard.Block)
	if _, err := tab.Install(ctx, nil, a); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Install(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	want := nft(t, ns, "list", "table", "inet", "swanmgr") // b, patched from a
	if _, err := tab.Install(ctx, b, a); err != nil {
		t.Fatal(err)
	}
	run, err := tab.PrepareFrom(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("made ready, not sent: fingerprint %q, want a's %q", fp, a.Hash())
	}
	if changed, err := run(ctx); err != nil || !changed {
		t.Fatalf("sent: %v %v", changed, err)
	}
	if got := nft(t, ns, "list", "table", "inet", "swanmgr"); got != want {
		t.Errorf("patched from a:\n%s\nwant b's as Install patches it:\n%s", got, want)
	}

	// Made from b, but the table became c before it is sent.
	sentOverChangedTable(t, ctx, ns, tab, tab.PrepareFrom, a, b, c)
	if _, err := tab.Install(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
}

// sentOverChangedTable makes ready (prepare) the change from b, the live
// table, to a, lets the table become c before it is sent, and checks that
// it ends as a: the patch fails whole and the table is replaced.
func sentOverChangedTable(t *testing.T, ctx context.Context, ns string, tab *netfilter.Table,
	prepare func(context.Context, *guard.Ruleset, *guard.Ruleset) (func(context.Context) (bool, error), error), a, b, c *guard.Ruleset) {
	t.Helper()
	run, err := prepare(ctx, b, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Install(ctx, b, c); err != nil {
		t.Fatal(err)
	}
	if changed, err := run(ctx); err != nil || !changed {
		t.Fatalf("sent over a changed table: %v %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("sent over a changed table: fingerprint %q, want a's %q", fp, a.Hash())
	}
	listing := nft(t, ns, "list", "table", "inet", "swanmgr")
	if strings.Contains(listing, "6669") || strings.Contains(listing, "6668") || !strings.Contains(listing, "6667") {
		t.Errorf("sent over a changed table:\n%s", listing)
	}
}

// bigRuleset has n rules of one entry each way, every other one port
// shifted by shift.
func bigRuleset(n, shift int) *guard.Ruleset {
	rs := &guard.Ruleset{Format: guard.Format, Backend: guard.Kernel}
	for i := range n {
		port := 1000 + i
		if i%2 == 0 {
			port += shift
		}
		c := fmt.Sprintf("r-%d", i)
		peer := fmt.Sprintf("10.%d.%d.%d", 1+i/65536, (i/256)%256, i%256)
		rs.Rules = append(rs.Rules, guard.Rule{Name: c, Counter: c, Verdict: guard.Negotiate})
		rs.Entries = append(rs.Entries,
			guard.Entry{Family: 4, Shape: "4-s32-d32-p-dp-o", Key: []string{"172.16.98.231", peer, "6", fmt.Sprint(port)}, Verdict: guard.Negotiate, Counter: c},
			guard.Entry{Family: 4, Shape: "4-s32-d32-p-sp-i", Key: []string{peer, "172.16.98.231", "6", fmt.Sprint(port)}, Verdict: guard.Negotiate, Counter: c})
	}
	return rs
}

// A transaction goes to nft with each set's elements in few commands
// (guard.BatchElements): a new table and a patch of it end as the same
// table as the transaction sent line by line, as knftables writes it.
func TestIntegrationBatchedAsUnbatched(t *testing.T) {
	batched, plain := netns(t), netns(t)
	tab, err := netfilter.Open("/run/netns/" + batched)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := bigRuleset(3000, 0), bigRuleset(3000, 7)
	lineByLine := func(live string, prev, next *guard.Ruleset) {
		t.Helper()
		tx := knftables.NewFake(knftables.InetFamily, guard.Table).NewTransaction()
		guard.Fill(tx, live, prev, next)
		script := tx.String()
		if strings.Count(script, "add element") < 1000 {
			t.Fatalf("the transaction has %d element commands", strings.Count(script, "add element"))
		}
		cmd := exec.Command("ip", "netns", "exec", plain, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v: %s", err, out)
		}
	}
	if _, err := tab.Install(ctx, nil, a); err != nil {
		t.Fatal(err)
	}
	lineByLine("", nil, a)
	if got, want := nft(t, batched, "list", "table", "inet", "swanmgr"), nft(t, plain, "list", "table", "inet", "swanmgr"); got != want {
		t.Fatalf("installed batched:\n%.2000s\nline by line:\n%.2000s", got, want)
	}
	if _, err := tab.Install(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	lineByLine(a.Hash(), a, b)
	got, want := nft(t, batched, "list", "table", "inet", "swanmgr"), nft(t, plain, "list", "table", "inet", "swanmgr")
	if got != want {
		t.Fatalf("patched batched:\n%.2000s\nline by line:\n%.2000s", got, want)
	}
	if !strings.Contains(got, "172.16.98.231 . 10.1.0.0 . tcp . 1007") || strings.Contains(got, "172.16.98.231 . 10.1.0.0 . tcp . 1000 ") {
		t.Fatalf("the patch did not change the table")
	}
}

// nftShim puts an nft first on PATH that logs its arguments to dir/log,
// passes --version through, and runs filter (shell, with the transaction
// in $in, its folder in $dir and the real nft in $real) before handing
// the transaction to the real nft. It returns the shim's folder.
func nftShim(t *testing.T, filter string) string {
	t.Helper()
	real, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\ndir=" + dir + "\nreal=" + real + "\n" + `echo "$*" >> "$dir/log"
case "$1" in --version) exec "$real" "$@";; esac
in=$(cat)
` + filter + `
printf '%s\n' "$in" | exec "$real" "$@"
`
	if err := os.WriteFile(dir+"/nft", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return dir
}

// An nft (or kernel) that refuses comments on tables: the first refusal
// sets up knftables' own interface, which checks what nft takes and
// leaves such comments out, and the transaction is made again with it.
func TestIntegrationNftWithoutObjectComments(t *testing.T) {
	ns := netns(t)
	nftShim(t, `case "$in" in *'add table inet '*' { comment'*)
	echo 'Error: Could not process rule: Operation not supported' >&2
	printf '%s\n' "$in" | grep -m1 'add table inet .* { comment' >&2
	exit 1;;
esac`)
	tab, err := netfilter.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	a, b := ruleset("r-r", "6667", guard.Negotiate), ruleset("r-r2", "6668", guard.Block)
	if changed, err := tab.Install(ctx, nil, a); err != nil || !changed {
		t.Fatalf("install: %v, %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != a.Hash() {
		t.Fatalf("fingerprint %q, want %q", fp, a.Hash())
	}
	listing := nft(t, ns, "list", "table", "inet", "swanmgr")
	if strings.Contains(listing, "swanmgr's IPsec guard") || !strings.Contains(listing, `comment "r-r"`) {
		t.Fatalf("table:\n%s", listing)
	}
	if changed, err := tab.Install(ctx, a, b); err != nil || !changed {
		t.Fatalf("patch: %v, %v", changed, err)
	}
	if fp, _ := tab.Fingerprint(ctx); fp != b.Hash() {
		t.Fatalf("fingerprint after the patch %q, want %q", fp, b.Hash())
	}
}

// A failure whose message only shows a comment (nft repeats the command
// it refused, and elements carry their counter's name as one) is not taken
// for an nft without comments: the error is reported as it is, and later
// changes still go without knftables' set-up (no nft --version).
func TestIntegrationOtherFailureWithAComment(t *testing.T) {
	ns := netns(t)
	dir := nftShim(t, `if [ -e "$dir/fail" ]; then
	case "$in" in *'comment "r-r2"'*)
		echo 'Error: Could not process rule: No such file or directory' >&2
		printf '%s\n' "$in" | grep -m1 'comment "r-r2"' >&2
		exit 1;;
	esac
fi`)
	os.WriteFile(dir+"/fail", nil, 0o644)
	tab, err := netfilter.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	ctx := context.Background()
	b := ruleset("r-r2", "6668", guard.Negotiate)
	if _, err := tab.Install(ctx, nil, b); err == nil || !strings.Contains(err.Error(), "No such file or directory") {
		t.Fatalf("install that nft refuses: %v", err)
	}
	os.Remove(dir + "/fail")
	if _, err := tab.Install(ctx, nil, b); err != nil {
		t.Fatal(err)
	}
	if listing := nft(t, ns, "list", "table", "inet", "swanmgr"); !strings.Contains(listing, "swanmgr's IPsec guard") {
		t.Fatalf("the table lost its comment:\n%s", listing)
	}
	if log, _ := os.ReadFile(dir + "/log"); strings.Contains(string(log), "--version") {
		t.Fatalf("knftables' set-up ran after a failure that was not about comments:\n%s", log)
	}
}
