package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// agentProc is a `swanmgr agent` this test started, ended by its pid.
type agentProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan error
	err  error
	over bool
}

// startAgent runs the built binary's agent for a lab host in the
// foreground; the test's cleanup sends it SIGTERM unless it ended.
func (l *testLab) startAgent(bin, host, policy string, extra ...string) *agentProc {
	l.t.Helper()
	h := l.Host(host)
	args := append([]string{"agent", "--socket", h.Socket, "--state-dir", l.stateDir, "-f", policy, "--check-interval", "1s"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	p := &agentProc{t: l.t, cmd: cmd, log: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	l.t.Cleanup(func() {
		if p.over {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM) // by pid: only the process this test started
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if l.t.Failed() {
			l.t.Logf("--- %s agent log ---\n%s", host, p.log.String())
		}
	})
	return p
}

// waitLog polls the agent's log until it holds want (after offset).
func (p *agentProc) waitLog(d time.Duration, from int, want string) {
	p.t.Helper()
	eventually(p.t, d, func() (bool, string) {
		select {
		case err := <-p.done:
			p.done <- err
			return false, fmt.Sprintf("the agent exited (%v):\n%s", err, p.log.String())
		default:
		}
		s := p.log.String()
		return strings.Contains(s[min(from, len(s)):], want), fmt.Sprintf("the agent's log lacks %q:\n%s", want, s)
	})
}

// stop sends SIGTERM and returns the agent's exit error.
func (p *agentProc) stop() error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case p.err = <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("the agent did not exit within 20 s of SIGTERM:\n%s", p.log.String())
	}
	p.over = true
	return p.err
}

// conns asks a charon for its connection names (nil when it does not answer).
func conns(socket string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := vici.Dial(ctx, socket)
	if err != nil {
		return nil
	}
	defer c.Close()
	names, err := c.Conns(ctx)
	if err != nil {
		return nil
	}
	return names
}

// accepting reports whether a unix socket accepts a connection now.
func accepting(socket string) bool {
	c, err := net.DialTimeout("unix", socket, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// The agent keeps Alice's policy across a kill and restart of her charon (policy
// back within 2 s of the socket accepting again, SA re-established, traffic
// encrypted), restores it within 5 s after a stray `swanctl --load-all` of
// an unrelated file (which stays loaded), and exits 0 on SIGTERM leaving
// the assignment.
func TestAgentRestoresAfterRestartAndStrayLoadAll(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	alice := l.startAgent(bin, "alice", l.example("alice-bob/alice.toml"))
	bob := l.startAgent(bin, "bob", l.example("alice-bob/bob.toml"))
	alice.waitLog(30*time.Second, 0, `added "Abczz with Bob"`)
	bob.waitLog(30*time.Second, 0, `added "Abczz with Alice"`)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)

	// (a) Alice's charon is killed (SIGKILL, by the pid the lab started),
	// then `lab restart` brings it back; the agent brings the policy back.
	sock := l.Host("alice").Socket
	const conn = "sm-abczz-with-bob"
	from := len(alice.log.String())
	if err := syscall.Kill(l.Host("alice").Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The agent notices: its event stream closes ("went away"), or its
	// next check cannot reach charon ("lost charon").
	eventually(t, 5*time.Second, func() (bool, string) {
		s := alice.log.String()[from:]
		return strings.Contains(s, "went away") || strings.Contains(s, "lost charon"), "the agent did not notice charon died:\n" + s
	})
	restart := exec.Command(bin, "lab", "restart", "--dir", l.Dir, "alice")
	restartDone := make(chan error, 1)
	var restartOut lockedBuffer
	restart.Stdout, restart.Stderr = &restartOut, &restartOut
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { restartDone <- restart.Wait() }()
	// The charon `lab restart` started is not this process's: stop it by
	// the pid lab.json records before the lab goes down.
	t.Cleanup(func() {
		if fresh, err := lab.Open(l.Dir); err == nil {
			if h := fresh.Host("alice"); h != nil {
				if err := h.StopCharon(); err != nil {
					t.Errorf("stopping alice's restarted charon: %v", err)
				}
			}
		}
	})
	// Watch the socket: first down (the old charon gone), then accepting.
	var wentDown bool
	var accepted, restored time.Time
	deadline := time.Now().Add(30 * time.Second)
	for restored.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("charon did not come back with the policy within 30 s (went down %v, accepted at %v):\n%s\n%s", wentDown, accepted, restartOut.String(), alice.log.String())
		}
		up := accepting(sock)
		switch {
		case !wentDown && !up:
			wentDown = true
		case wentDown && up && accepted.IsZero():
			accepted = time.Now()
		}
		if !accepted.IsZero() && slices.Contains(conns(sock), conn) {
			restored = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-restartDone; err != nil {
		t.Fatalf("lab restart alice: %v\n%s", err, restartOut.String())
	}
	took := restored.Sub(accepted)
	t.Logf("policy restored %v after charon's socket accepted again (at %s)", took.Round(time.Millisecond), accepted.UTC().Format("15:04:05.000"))
	if took > time.Second {
		t.Logf("the agent meanwhile:\n%s", alice.log.String()[from:])
	}
	if took > 2*time.Second {
		t.Errorf("the policy came back %v after the socket accepted, want within 2 s", took)
	}
	alice.waitLog(5*time.Second, from, `restored 1 rule charon had lost ("Abczz with Bob")`)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)

	// (b) A stray `swanctl --load-all` of a file that is not swanmgr's: it
	// unloads every connection not in the file.
	unrelated := filepath.Join(t.TempDir(), "swanctl.conf")
	if err := os.WriteFile(unrelated, []byte("connections {\n  unrelated {\n    remote_addrs = 192.0.2.1\n    local { auth = psk }\n    remote { auth = psk }\n    children { unrelated-child { } }\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from = len(alice.log.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.Host("alice").Swanctl(ctx, "--load-all", "--file", unrelated).CombinedOutput()
	if err != nil {
		t.Fatalf("swanctl --load-all: %v\n%s", err, out)
	}
	loaded := time.Now()
	// The agent may have repaired it already: swanctl's own count says
	// whether it unloaded swanmgr's connection.
	if !regexp.MustCompile(`loaded 1 connections, 1 unloaded`).Match(out) {
		t.Fatalf("swanctl --load-all did not unload swanmgr's connection, this test shows nothing:\n%s", out)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		names := conns(sock)
		return slices.Contains(names, conn), fmt.Sprintf("charon has %v, want %s back", names, conn)
	})
	took = time.Since(loaded)
	t.Logf("connections restored %v after swanctl --load-all", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("swanmgr's connection came back %v after the stray load-all, want within 5 s", took)
	}
	alice.waitLog(5*time.Second, from, `restored 1 rule charon had lost ("Abczz with Bob")`)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)
	// Checks later (the SA and the traffic took seconds), the unrelated
	// connection is as loaded and the agent repaired once.
	if names := conns(sock); !slices.Contains(names, "unrelated") || !slices.Contains(names, conn) {
		t.Fatalf("after the repair charon has %v, want both swanmgr's and the unrelated connection", names)
	}
	if n := strings.Count(alice.log.String()[from:], "applied policy"); n != 1 {
		t.Errorf("the agent applied %d times after the stray load-all, want once:\n%s", n, alice.log.String()[from:])
	}

	// A stray load of a file that has a connection of swanmgr's name with
	// other settings (another port): charon replaces swanmgr's copy, and the
	// agent's full check (every 3 s) loads swanmgr's again.
	replaced := filepath.Join(t.TempDir(), "swanctl.conf")
	if err := os.WriteFile(replaced, []byte("connections {\n  unrelated {\n    remote_addrs = 192.0.2.1\n    local { auth = psk }\n    remote { auth = psk }\n    children { unrelated-child { } }\n  }\n"+
		replacement(conn)+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from = len(alice.log.String())
	if out, err := l.Host("alice").Swanctl(ctx, "--load-conns", "--file", replaced).CombinedOutput(); err != nil {
		t.Fatalf("swanctl --load-conns: %v\n%s", err, out)
	}
	loaded = time.Now()
	eventually(t, 10*time.Second, func() (bool, string) {
		out, err := l.Host("alice").Swanctl(ctx, "--list-conns").CombinedOutput()
		s := string(out)
		return err == nil && !strings.Contains(s, "tcp/9999") && strings.Contains(s, conn+"-3"), "charon still has the replaced connection:\n" + s
	})
	took = time.Since(loaded)
	t.Logf("replaced connection repaired %v after swanctl --load-conns", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("swanmgr's replaced connection came back %v after the stray load, want within 5 s", took)
	}
	alice.waitLog(5*time.Second, from, `charon's copy of rule "Abczz with Bob" was replaced by someone else`)
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)

	// (d) SIGTERM: exit 0, the assignment stays.
	if err := alice.stop(); err != nil {
		t.Fatalf("agent after SIGTERM: %v, want exit 0\n%s", err, alice.log.String())
	}
	if !strings.Contains(alice.log.String(), "agent stopping: the assignment stays in place") {
		t.Errorf("the agent did not log its stop:\n%s", alice.log.String())
	}
	if names := conns(sock); !slices.Contains(names, conn) {
		t.Fatalf("after the agent stopped charon has %v, want %s still assigned", names, conn)
	}
	if g := l.nftList("alice"); !strings.Contains(g, "table inet "+guard.Table) {
		t.Fatalf("after the agent stopped the guard is gone:\n%s", g)
	}
	l.sendEncrypted("alice", "bob", 6667)
}

// nftList lists the guard's table in a host's namespace, counts removed
// (those of its rules, elements and named counters: charon's own traffic
// moves ipsec-traffic at any time).
func (l *testLab) nftList(host string) string {
	l.t.Helper()
	out, err := l.Host(host).Command(context.Background(), "nft", "list", "table", "inet", guard.Table).CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft list table inet %s on %s: %v\n%s", guard.Table, host, err, out)
	}
	return regexp.MustCompile(`packets \d+ bytes \d+`).ReplaceAllString(string(out), "packets bytes")
}

// A broken edit of the policy file is refused with file:line and the
// running assignment and guard stay; a good edit is applied.
func TestAgentRefusesBrokenEdit(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	policy := l.example("alice-bob/alice.toml")
	good, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	alice := l.startAgent(bin, "alice", policy)
	alice.waitLog(30*time.Second, 0, `added "Abczz with Bob"`)
	sock := l.Host("alice").Socket
	guardBefore := l.nftList("alice")
	connsBefore := conns(sock)

	from := len(alice.log.String())
	broken := strings.Replace(string(good), `security = "high"`, `security = "hihg"`, 1)
	if broken == string(good) {
		t.Fatal("the example changed: no security = \"high\" to break")
	}
	line := 0
	for i, s := range strings.Split(broken, "\n") {
		if strings.Contains(s, `"hihg"`) {
			line = i + 1
		}
	}
	if err := os.WriteFile(policy, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	alice.waitLog(10*time.Second, from, fmt.Sprintf("%s:%d:", policy, line))
	alice.waitLog(time.Second, from, `refused, policy "Alice's IPSec" stays assigned`)
	if got := conns(sock); !slices.Equal(got, connsBefore) {
		t.Fatalf("after the broken edit charon has %v, want %v as before", got, connsBefore)
	}
	if got := l.nftList("alice"); got != guardBefore {
		t.Fatalf("the broken edit changed the guard:\nbefore:\n%s\nafter:\n%s", guardBefore, got)
	}

	// A good edit: Alice also protects tcp/6669 to Bob.
	from = len(alice.log.String())
	edited := strings.Replace(string(good), "  destination_port = 6667\n",
		"  destination_port = 6667\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.31.67.244\"\n  protocol = \"tcp\"\n  destination_port = 6669\n", 1)
	if err := os.WriteFile(policy, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	alice.waitLog(10*time.Second, from, `changed "Abczz with Bob"`)
	out, err := l.Host("alice").Swanctl(context.Background(), "--list-conns").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "[tcp/6669]") {
		t.Fatalf("charon does not have the edited rule's new filter: %v\n%s", err, out)
	}
	if got := l.nftList("alice"); got == guardBefore || !strings.Contains(got, "6669") {
		t.Fatalf("the guard was not updated for the new filter:\n%s", got)
	}
}

// A rule that should be up and cannot come up (Bob has no policy yet, so
// his charon answers NO_PROPOSAL_CHOSEN): the agent initiates it again with
// a growing backoff and logs each failure with the reason initiate gives,
// never in a hot loop; once Bob's policy is assigned, the rule comes up.
func TestAgentReinitiatesWithBackoff(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	alice := l.startAgent(bin, "alice", l.example("alice-bob/alice.toml"), "--initiate-backoff", "1s")
	alice.waitLog(30*time.Second, 0, `added "Abczz with Bob"`)
	alice.waitLog(20*time.Second, 0, `rule "Abczz with Bob" failed (attempt 1, 3 of its CHILD_SAs down): sm-abczz-with-bob-1: no common security method`)
	alice.waitLog(time.Second, 0, "the peer may also have no rule for this traffic at all")
	alice.waitLog(20*time.Second, 0, "keeps failing (attempt 2,")
	alice.waitLog(20*time.Second, 0, "keeps failing (attempt 3,")
	// No hot loop: the rule's attempts are spaced 1 s, 2 s, 4 s apart, and
	// each is one line for the rule, not one per CHILD_SA.
	re := regexp.MustCompile(`(\S+) rule "Abczz with Bob" (?:failed|keeps failing) \(attempt (\d),`)
	var times []time.Time
	for i, m := range re.FindAllStringSubmatch(alice.log.String(), -1) {
		at, err := time.Parse("2006-01-02T15:04:05.000Z", m[1])
		if err != nil {
			t.Fatalf("log time %q: %v", m[1], err)
		}
		if m[2] != fmt.Sprint(i+1) {
			t.Fatalf("failure %d is logged as attempt %s:\n%s", i+1, m[2], alice.log.String())
		}
		times = append(times, at)
	}
	if len(times) < 3 {
		t.Fatalf("%d failures parsed from the log, want 3:\n%s", len(times), alice.log.String())
	}
	for i := 1; i < len(times); i++ {
		want := time.Duration(1<<(i-1)) * time.Second
		if gap := times[i].Sub(times[i-1]); gap < want {
			t.Errorf("attempt %d came %v after the one before, want at least %v (backoff)", i+1, gap, want)
		}
	}

	from := len(alice.log.String())
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)
	// The agent notices: the next look at the SAs finds them up.
	eventually(t, 15*time.Second, func() (bool, string) {
		s := alice.log.String()[from:]
		return strings.Contains(s, `rule "Abczz with Bob" is up again after`) || strings.Contains(s, `rule "Abczz with Bob" established after`), "the agent did not log the recovery:\n" + s
	})
}

// On the kernel backend (trap policies, no start action): the agent brings
// the policy back after a restart as well, for the backend charon runs.
func TestAgentKernelBackendRestart(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	alice := l.startAgent(bin, "alice", l.example("alice-bob/alice.toml"))
	alice.waitLog(30*time.Second, 0, `added "Abczz with Bob"`)
	if strings.Contains(alice.log.String(), "libipsec") {
		t.Fatalf("the agent took a kernel charon for libipsec:\n%s", alice.log.String())
	}
	from := len(alice.log.String())
	h := l.Host("alice")
	// In this process: the lab's teardown stops the new charon.
	if err := h.RestartCharon(context.Background()); err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	eventually(t, 10*time.Second, func() (bool, string) {
		names := conns(h.Socket)
		return slices.Contains(names, "sm-abczz-with-bob"), fmt.Sprintf("charon has %v", names)
	})
	took := time.Since(accepted)
	t.Logf("kernel backend: policy restored %v after the socket accepted again", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the policy came back %v after the socket accepted, want within 2 s", took)
	}
	alice.waitLog(5*time.Second, from, `restored 1 rule charon had lost ("Abczz with Bob")`)
	// Trap rules: nothing to initiate, and the agent does not try.
	if strings.Contains(alice.log.String(), "initiating") {
		t.Errorf("the agent initiated trap rules:\n%s", alice.log.String())
	}
	if g := l.nftList("alice"); !strings.Contains(g, "table inet "+guard.Table) {
		t.Fatalf("no guard after the restore:\n%s", g)
	}
}
