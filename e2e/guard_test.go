package e2e

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/netfilter"
	"github.com/swanmgr/swanmgr/vici"
)

// engine is an assign.Engine on a lab host's charon, with the guard in the
// host's network namespace, as the command line builds it.
func (l *testLab) engine(host string, client *vici.Client) *assign.Engine {
	sock := l.Host(host).Socket
	return &assign.Engine{Daemon: assign.ViciDaemon{Client: client}, Store: assign.Store{Dir: l.stateDir}, Socket: sock,
		Firewall: func() (assign.Firewall, error) {
			ns, err := netfilter.CharonNetns(sock)
			if err != nil {
				return nil, err
			}
			return netfilter.Open(ns)
		}}
}

// guardTable opens the guard's table in a host's namespace.
func (l *testLab) guardTable(host string) *netfilter.Table {
	l.t.Helper()
	tab, err := netfilter.Open("/run/netns/" + l.Host(host).Netns)
	if err != nil {
		l.t.Fatal(err)
	}
	return tab
}

// dropped is what a host's guard counted for a rule's counter.
func (l *testLab) dropped(host, counter string) uint64 {
	l.t.Helper()
	cs, err := l.guardTable(host).Counters(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	return cs[counter]
}

// nft runs nft in a host's namespace.
func (l *testLab) nft(host string, args ...string) string {
	l.t.Helper()
	out, err := l.Host(host).Command(context.Background(), "nft", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft %v on %s: %v\n%s", args, host, err, out)
	}
	return string(out)
}

// guardInNamespace checks that the host's guard is in the host's network
// namespace and not in the test's own (where charon does not run): the
// main thread of a Go program can be left in a lab namespace, so
// "this process's namespace" must never be taken for charon's.
func (l *testLab) guardInNamespace(host string) {
	l.t.Helper()
	if out, err := l.Host(host).Command(context.Background(), "nft", "list", "tables").CombinedOutput(); err != nil || !strings.Contains(string(out), "inet "+guard.Table) {
		l.t.Fatalf("no guard table in %s's namespace: %v %s", host, err, out)
	}
	if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "inet "+guard.Table) {
		l.t.Fatalf("a guard table is in the test's own namespace, not only in %s's", host)
	}
}

// sendBlocked tries to carry a message from one host to another and
// checks that it does not arrive and never crosses the receiver's wire in
// clear (tcpdump there).
func (l *testLab) sendBlocked(from, to, proto string, port int) {
	l.t.Helper()
	l.guardInNamespace(from)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	src, dst := l.Host(from), l.Host(to)
	capture, err := dst.StartCapture(context.Background(), fmt.Sprintf("host %s", src.Addr))
	if err != nil {
		l.t.Fatal(err)
	}
	msg := fmt.Sprintf("clear-text-canary %s to %s:%d %d", from, to, port, time.Now().UnixNano())
	got, err := lab.Send(ctx, src, dst, proto, port, []byte(msg))
	lines := capture.Stop()
	if err == nil {
		ruleset, _ := src.Command(context.Background(), "nft", "list", "ruleset").CombinedOutput()
		xfrm, _ := src.Command(context.Background(), "ip", "xfrm", "policy").CombinedOutput()
		l.t.Fatalf("%s → %s %s/%d arrived (%q); the guard should have dropped it\n%s\nnft ruleset on %s:\n%s\nxfrm policies:\n%s", from, to, proto, port, got, strings.Join(lines, "\n"), from, ruleset, xfrm)
	}
	for _, line := range lines {
		if strings.Contains(line, "clear-text-canary") {
			l.t.Fatalf("the payload crossed %s's wire in clear: %q", to, line)
		}
	}
	if n := lab.Summarize(lines, port).ClearTo[port]; n > 0 {
		l.t.Fatalf("%d clear packets for port %d on %s's wire:\n%s", n, port, to, strings.Join(lines, "\n"))
	}
}

// sendClear carries a message and checks it arrived (in clear: there is no
// policy for it).
func (l *testLab) sendClear(from, to, proto string, port int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := fmt.Sprintf("plain %s to %s:%d", from, to, port)
	got, err := lab.Send(ctx, l.Host(from), l.Host(to), proto, port, []byte(msg))
	if err != nil || string(got) != msg {
		l.t.Fatalf("%s → %s %s/%d: got %q, %v; want it delivered", from, to, proto, port, got, err)
	}
}

// Issue 9, e2e 1 and 2: the knowledge-base policy on libipsec. With the
// SA gone (the peer's charon stopped, the SA terminated) and with the
// local charon stopped, an Abczz message neither arrives nor crosses the
// wire in clear, and the guard counts what it dropped. Before the guard,
// both were sent in clear and arrived.
func TestGuardKeepsClearTextOff(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	l.sendEncrypted("alice", "bob", 6667)
	if n := l.dropped("alice", "r-abczz-with-bob"); n != 0 {
		t.Fatalf("the guard dropped %d packets while the SAs were up", n)
	}

	// The peer goes away and the SA with it.
	if err := l.Host("bob").StopCharon(); err != nil {
		t.Fatal(err)
	}
	if r := l.swanmgr("alice", "terminate", "--rule", "Abczz with Bob"); r.code != 0 {
		t.Fatalf("terminate: %s", r)
	}
	l.sendBlocked("alice", "bob", "tcp", 6667)
	n := l.dropped("alice", "r-abczz-with-bob")
	if n == 0 {
		t.Fatal("the guard counted no dropped packet for the rule")
	}
	// status says it: the rule is not established, guarded, with drops.
	st := l.statusJSON("alice")
	row, _ := findRow(st, "Abczz with Bob", 1)
	if row.HasSA || !row.Guarded {
		t.Errorf("status row of filter 1: has_sa %v guarded %v; want not established and guarded", row.HasSA, row.Guarded)
	}
	if st.Guard == nil || len(st.Guard.Rules) != 1 || st.Guard.Rules[0].DroppedPackets == nil || *st.Guard.Rules[0].DroppedPackets < n {
		t.Errorf("status guard: %+v; want the rule with at least %d dropped packets", st.Guard, n)
	}
	if r := l.swanmgr("alice", "status"); !strings.Contains(r.stdout, "GUARD (nftables table inet swanmgr") || !strings.Contains(r.stdout, `"Abczz with Bob"  negotiate`) {
		t.Errorf("status table lacks the guard:\n%s", r.stdout)
	}

	// Bob comes back; the local charon goes away instead.
	if err := l.Host("bob").StartCharon(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	if err := l.Host("alice").StopCharon(); err != nil {
		t.Fatal(err)
	}
	l.sendBlocked("alice", "bob", "tcp", 6668)
	l.sendBlocked("bob", "alice", "tcp", 6668)
	// The guard outlives charon.
	if out := l.nft("alice", "list", "table", "inet", guard.Table); !strings.Contains(out, "set "+guard.FingerprintSet) || !strings.Contains(out, `comment "r-abczz-with-bob"`) {
		t.Fatalf("the guard is gone with charon:\n%s", out)
	}
}

const blockPolicy = `
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Admin port"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 7002

[[filter_action]]
name = "Block"
action = "block"

[[policy]]
name = "Blocks"
  [[policy.rule]]
  name = "No admin"
  filter_list = "Admin port"
  filter_action = "Block"
`

// Issue 9, e2e 4 and 5: a block rule drops on the kernel backend while
// charon runs and after it stopped, and on libipsec (which ignores drop
// policies) thanks to the guard; traffic no rule covers passes; unassign
// removes the guard and traffic flows again; a table the test made is
// byte for byte the same before and after.
func TestGuardBlockRule(t *testing.T) {
	t.Parallel()
	for _, b := range []lab.Backend{lab.Kernel, lab.Libipsec} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, b, "alice", "bob")
			other := "table ip testers {\n\tchain out {\n\t\ttype filter hook output priority 10; policy accept;\n\t\tip daddr 10.200.0.1 counter drop\n\t}\n}\n"
			f := l.writeFile("other.nft", other, 0o644)
			l.nft("alice", "-f", f)
			before := l.nft("alice", "list", "table", "ip", "testers")

			pol := l.writeFile("block.toml", blockPolicy, 0o644)
			l.mustApply("alice", pol)
			l.sendBlocked("alice", "bob", "tcp", 7002)
			l.sendClear("alice", "bob", "tcp", 7003)
			if err := l.Host("alice").StopCharon(); err != nil {
				t.Fatal(err)
			}
			l.sendBlocked("alice", "bob", "tcp", 7002)
			if n := l.dropped("alice", "r-no-admin"); n == 0 {
				t.Error("no drop counted for the block rule")
			}
			if err := l.Host("alice").StartCharon(context.Background()); err != nil {
				t.Fatal(err)
			}
			if r := l.swanmgr("alice", "unassign"); r.code != 0 || !strings.Contains(r.stdout, "guard removed") {
				t.Fatalf("unassign: %s", r)
			}
			if out := l.nft("alice", "list", "tables"); strings.Contains(out, guard.Table) {
				t.Fatalf("guard table left after unassign: %s", out)
			}
			l.sendClear("alice", "bob", "tcp", 7002)
			if after := l.nft("alice", "list", "table", "ip", "testers"); after != before {
				t.Fatalf("a table swanmgr did not make changed:\n%s\nwas\n%s", after, before)
			}
		})
	}
}

// manyRules is a policy of n negotiate rules to Bob, one TCP port each
// from base.
func manyRules(n, base int) string {
	var b strings.Builder
	b.WriteString("[endpoint]\naddresses = [\"172.16.98.231\"]\n\n[[filter_action]]\nname = \"Encrypt\"\naction = \"negotiate\"\n\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"L%d\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.31.67.244\"\n  protocol = \"tcp\"\n  destination_port = %d\n\n", i, base+i)
	}
	b.WriteString("[[policy]]\nname = \"Many\"\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"R%d\"\n  filter_list = \"L%d\"\n  filter_action = \"Encrypt\"\n  authentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n", i, i)
	}
	return b.String()
}

var guardedPortRE = regexp.MustCompile(`\. (\d+) : (?:continue|goto )`)

// guardedPorts lists the destination ports the live guard makes
// negotiate or block (the Alice → Bob orientation), from nft's listing.
func (l *testLab) guardedPorts(host string) (map[string]bool, bool) {
	out, err := l.Host(host).Command(context.Background(), "nft", "list", "map", "inet", guard.Table, "v-4-s32-d32-p-dp-o").CombinedOutput()
	if err != nil {
		return nil, false
	}
	ports := map[string]bool{}
	for _, m := range guardedPortRE.FindAllStringSubmatch(string(out), -1) {
		ports[m[1]] = true
	}
	return ports, true
}

// Issue 9, e2e 6: swanmgr killed with SIGKILL in the middle of an apply
// that moves 1,000 rules to other ports. Sampled all along, the guard never
// guards less than the old or the new policy; the next apply leaves
// exactly the new one. A gate at charon's socket holds back the apply's
// first command after its load-conn (charon has the new connection, the
// guard is not narrowed yet) and the test kills it there: before, the test
// raced the apply and on a loaded machine (CI) could kill it after it had
// narrowed the guard, or not at all.
func TestGuardNeverWeakerWhenKilled(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice", "bob")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	l.writeFile("k.psk", "lab-only: a preshared key of enough length 42\n", 0o600)
	const n = 1000
	oldPol := l.writeFile("old.toml", manyRules(n, 10000), 0o644)
	newPol := l.writeFile("new.toml", manyRules(n, 20000), 0o644)
	l.mustApply("alice", oldPol)

	want := map[string]bool{} // port -> in the new policy
	for i := 0; i < n; i++ {
		want[fmt.Sprint(10000+i)] = false
		want[fmt.Sprint(20000+i)] = true
	}
	reached, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer letGo()
	var loaded, held atomic.Bool
	gate := newViciGate(t, l.Host("alice"), func(name string) bool {
		if !loaded.Load() {
			loaded.Store(name == "load-conn")
			return true
		}
		if !held.Swap(true) {
			close(reached)
		}
		<-release
		return false
	})
	cmd := exec.Command(bin, "apply", "--socket", l.Host("alice").Socket, "--state-dir", l.stateDir, "-f", newPol)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	samples := 0
	deadline := time.Now().Add(60 * time.Second)
	killed := false
	torn := 0
	for time.Now().Before(deadline) {
		// A listing of the map that a transaction commits into while it
		// is dumped can miss elements of both states (the kernel resumes
		// a set's dump by counting elements, and the hash set grows from
		// 1,000 to 2,000 elements): a state counts when two listings in a
		// row agree. A state the apply installs stays until its next
		// transaction, so a wrong one is still seen.
		ports, ok := l.guardedPorts("alice")
		again, ok2 := l.guardedPorts("alice")
		if !ok || !ok2 {
			t.Fatal("the guard table vanished during the apply")
		}
		if !maps.Equal(ports, again) {
			torn++
			continue
		}
		samples++
		for p := 0; p < n; p++ {
			if !ports[fmt.Sprint(10000+p)] {
				// The old ports may only go once the new ones are all there.
				for q := 0; q < n; q++ {
					if !ports[fmt.Sprint(20000+q)] {
						t.Fatalf("sample %d: old port %d unguarded while new port %d is not guarded yet", samples, 10000+p, 20000+q)
					}
				}
				break
			}
		}
		select {
		case <-reached:
			if !killed {
				// The new connection loaded, the guard not narrowed yet:
				// both policies are guarded.
				ports, _ := l.guardedPorts("alice")
				for p := range want {
					if !ports[p] {
						out, _ := l.Host("alice").Command(context.Background(), "nft", "list", "table", "inet", guard.Table).CombinedOutput()
						t.Fatalf("with the new connection loaded, port %s is unguarded (%d ports guarded)\n%s", p, len(ports), grepLines(string(out), p))
					}
				}
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				letGo()
			}
		default:
		}
		select {
		case err := <-exited:
			if !killed {
				t.Fatalf("the apply ended (%v) without a command after its load-conn: nothing was tested\n%s", err, out.String())
			}
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("the apply was not killed (%v)\n%s", err, out.String())
			}
			goto done
		default:
		}
	}
	t.Fatal("apply did not end")
done:
	gate.close()
	// Killed before narrowing: both policies are guarded.
	ports, _ := l.guardedPorts("alice")
	for p := range want {
		if !ports[p] {
			t.Fatalf("after SIGKILL port %s is unguarded", p)
		}
	}
	// The next apply converges to the new policy exactly.
	l.mustApply("alice", newPol)
	ports, _ = l.guardedPorts("alice")
	for p, isNew := range want {
		if ports[p] != isNew {
			t.Fatalf("after the next apply port %s guarded = %v, want %v", p, ports[p], isNew)
		}
	}
	t.Logf("%d samples during the apply (%d pairs of listings that disagreed)", samples, torn)
}

func grepLines(s, sub string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) || !strings.Contains(line, ":") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// charon's VICI socket served through a relay (here a forwarding process
// named vici-relay in charon's namespace, as socat would be): swanmgr
// finds the guard's namespace from the process at the socket, so it
// refuses to guard through anything not named charon, before loading
// anything. Before, the guard went into the relay's namespace and the
// apply reported clear text dropped.
func TestGuardRefusesARelayedSocket(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice", "bob")
	relay := newViciRelay(t, l.Host("alice"), "vici-relay", func(string) bool { return true })
	r := l.swanmgr("alice", "apply", "-f", l.example("alice-bob/alice.toml"))
	if r.code == 0 || !strings.Contains(r.stderr, `"vici-relay"`) || !strings.Contains(r.stderr, "not charon") {
		t.Fatalf("apply through a relay: %s; want a refusal naming the relay", r)
	}
	relay.close()
	if conns, err := l.client("alice").Conns(context.Background()); err != nil || len(conns) != 0 {
		t.Fatalf("charon's connections after the refusal: %v %v; want none", conns, err)
	}
	// charon's own socket: the same apply goes through.
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
}
