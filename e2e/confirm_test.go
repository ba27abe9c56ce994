package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/lab"
)

// session is a long-lived TCP session from one host to another (a
// stand-in for the operator's SSH): an echo server on the receiver.
type session struct {
	ln   net.Listener
	conn net.Conn
	r    *bufio.Reader
}

func openSession(t *testing.T, l *testLab, from, to string, port int) *session {
	t.Helper()
	dst := l.Host(to)
	addr := netip.AddrPortFrom(dst.Addr, uint16(port)).String()
	ln, err := dst.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.Host(from).Dial(ctx, "tcp4", addr)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	s := &session{ln: ln, conn: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close(); ln.Close() })
	return s
}

// alive sends a line and waits up to d for its echo.
func (s *session) alive(d time.Duration) bool {
	s.conn.SetDeadline(time.Now().Add(d))
	defer s.conn.SetDeadline(time.Time{})
	msg := fmt.Sprintf("ping %d\n", time.Now().UnixNano())
	if _, err := s.conn.Write([]byte(msg)); err != nil {
		return false
	}
	got, err := s.r.ReadString('\n')
	return err == nil && got == msg
}

// blockSSH is Alice's knowledge-base policy plus a block rule for the
// session's port from Eve: the kind of change that locks an operator out.
func blockSSH(kb string) string {
	return kb + `
[[filter_list]]
name = "Admin from Eve"
  [[filter_list.filter]]
  source = "172.20.0.5"
  destination = "me"
  protocol = "tcp"
  destination_port = 2200

[[filter_action]]
name = "Block it"
action = "block"

[[policy]]
name = "Alice with a lockout"
  [[policy.rule]]
  name = "Abczz with Bob"
  filter_list = "Abczz to Bob's PC"
  filter_action = "Encrypt Abczz"
  network = "lan"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
  [[policy.rule]]
  name = "No admin from Eve"
  filter_list = "Admin from Eve"
  filter_action = "Block it"
`
}

// Issue 13: a real lockout. Eve holds a TCP session to Alice (the
// operator's SSH); `apply --confirm 5s` of a policy with a block rule
// for it kills the session; nobody confirms; within the deadline + 2 s the
// previous assignment is back (the block rule and its guard gone), a new
// session works, and the SAs of the unchanged rule kept their ids.
// Then: confirm in time keeps the change; a second apply without
// --confirm is refused while one is pending; revert reverts at once; the
// applying process SIGKILLed still reverts.
func TestConfirmOrRevert(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	before := l.waitInstalled("alice", "sm-abczz-with-bob-1")

	kb, err := os.ReadFile(l.example("alice-bob/alice.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The new policy is assigned by name: keep the knowledge base's rule
	// and add the block.
	text := strings.Replace(string(kb), `assign = "Alice's IPSec"`, `assign = "Alice with a lockout"`, 1)
	locked := l.writeFile("alice-bob/alice-lockout.toml", blockSSH(text), 0o644)
	sock := l.Host("alice").Socket
	swanmgr := func(args ...string) (string, error) {
		full := append([]string{args[0], "--socket", sock, "--state-dir", l.stateDir}, args[1:]...)
		cmd := exec.Command(bin, full...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	store := assign.Store{Dir: l.stateDir}
	t.Cleanup(func() {
		// A watchdog left by a failed test is ended by its pid.
		if conf, _ := store.LoadConfirmation(sock); conf != nil && conf.Watchdog > 0 {
			syscall.Kill(conf.Watchdog, syscall.SIGTERM)
		}
	})
	policyName := func() string {
		rec, err := store.Load(sock)
		if err != nil || rec == nil {
			return ""
		}
		return rec.Policy
	}

	ssh := openSession(t, l, "eve", "alice", 2200)
	if !ssh.alive(3 * time.Second) {
		t.Fatal("the session does not work before the change")
	}
	out, err := swanmgr("apply", "--confirm", "5s", "-f", locked)
	if err != nil || !strings.Contains(out, "pending confirmation") {
		t.Fatalf("apply --confirm: %v\n%s", err, out)
	}
	start := time.Now()
	if ssh.alive(2 * time.Second) {
		t.Fatal("the session survived a block rule covering it")
	}
	// status shows it pending, with its deadline.
	if st := l.statusJSON("alice"); st.Confirmation == nil || st.Confirmation.Command != "apply" || st.Confirmation.RevertsTo == nil {
		t.Errorf("status while pending: %+v", st.Confirmation)
	}
	// One change at a time.
	if out, err := swanmgr("apply", "-f", l.example("alice-bob/alice.toml")); err == nil || !strings.Contains(out, "pending confirmation") {
		t.Fatalf("a second apply without --confirm while one is pending: %v\n%s", err, out)
	}
	eventually(t, 5*time.Second+2*time.Second-time.Since(start)+time.Second, func() (bool, string) {
		return policyName() == "Alice's IPSec", "policy " + policyName() + " still assigned"
	})
	if d := time.Since(start); d > 7*time.Second+time.Second {
		t.Errorf("reverted %v after the apply; want within the deadline + 2 s", d)
	}
	fresh := openSession(t, l, "eve", "alice", 2201)
	if !fresh.alive(3 * time.Second) {
		t.Error("a new session from Eve does not work after the revert")
	}
	if out := l.nft("alice", "list", "table", "inet", "swanmgr"); strings.Contains(out, "no-admin") {
		t.Errorf("the block rule's guard is still there after the revert:\n%s", out)
	}
	after := installed(l.sas("alice"))
	if after["sm-abczz-with-bob-1"].UniqueID != before["sm-abczz-with-bob-1"].UniqueID {
		t.Error("the revert disturbed the SA of the unchanged rule")
	}
	if st := l.statusJSON("alice"); st.LastRevert == nil || !strings.Contains(st.LastRevert.Reason, "not confirmed within 5s") || st.Confirmation != nil {
		t.Errorf("status after the revert: last revert %+v, pending %+v", st.LastRevert, st.Confirmation)
	}

	// Confirmed in time: the change stays past the deadline.
	if out, err := swanmgr("apply", "--confirm", "3s", "-f", locked); err != nil {
		t.Fatalf("apply --confirm: %v\n%s", err, out)
	}
	if out, err := swanmgr("confirm"); err != nil || !strings.Contains(out, "confirmed") {
		t.Fatalf("confirm: %v\n%s", err, out)
	}
	// Sampled until well past the deadline: nothing reverts it.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); <-tick.C {
		if policyName() != "Alice with a lockout" {
			t.Fatal("a confirmed change was reverted")
		}
		if conf, _ := store.LoadConfirmation(sock); conf != nil {
			t.Fatal("still pending after confirm")
		}
	}

	// revert at once (back to the lockout policy's predecessor, which is
	// the lockout policy itself now: go to the knowledge base first).
	if out, err := swanmgr("apply", "-f", l.example("alice-bob/alice.toml")); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if out, err := swanmgr("apply", "--confirm", "1m", "-f", locked); err != nil {
		t.Fatalf("apply --confirm: %v\n%s", err, out)
	}
	if out, err := swanmgr("revert"); err != nil || !strings.Contains(out, "reverted") || policyName() != "Alice's IPSec" {
		t.Fatalf("revert: %v, policy %q\n%s", err, policyName(), out)
	} else if !strings.Contains(out, "1 rule changed back") {
		// The block rule has no connection on libipsec (the guard alone
		// enforces it); the knowledge base's rule is as it was.
		t.Errorf("revert of the lockout counts its rules wrong:\n%s", out)
	} else {
		t.Logf("revert: %s", strings.TrimSpace(out))
	}

	// The applying process killed: the watchdog still reverts.
	cmd := exec.Command(bin, "apply", "--socket", sock, "--state-dir", l.stateDir, "--confirm", "3s", "-f", locked)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		conf, _ := store.LoadConfirmation(sock)
		return conf != nil && conf.Watchdog > 0, "no pending confirmation yet"
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	eventually(t, 12*time.Second, func() (bool, string) {
		conf, _ := store.LoadConfirmation(sock)
		return conf == nil && policyName() == "Alice's IPSec", fmt.Sprintf("policy %q, pending %v", policyName(), conf != nil)
	})

	// unassign --confirm: not confirmed, the policy comes back.
	if out, err := swanmgr("unassign", "--confirm", "2s"); err != nil || !strings.Contains(out, "pending confirmation") {
		t.Fatalf("unassign --confirm: %v\n%s", err, out)
	}
	if policyName() != "" {
		t.Fatalf("after unassign policy %q is still recorded", policyName())
	}
	eventually(t, 8*time.Second, func() (bool, string) {
		return policyName() == "Alice's IPSec", fmt.Sprintf("policy %q after the unassign's deadline", policyName())
	})
}

// Issue 13 with the agent: the operator edits the agent's policy file
// into a lockout and applies it with --confirm; the agent holds off while
// it is pending; the watchdog dies (as in a reboot) and the agent itself
// reverts at the deadline, then does not assign the reverted file again
// until it changes.
func TestConfirmWithAgent(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	bin := filepath.Join(buildSwanmgr(t), "swanmgr")
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	kb, err := os.ReadFile(l.example("alice-bob/alice.toml"))
	if err != nil {
		t.Fatal(err)
	}
	policy := l.writeFile("alice-bob/agent.toml", string(kb), 0o644)
	sock := l.Host("alice").Socket
	store := assign.Store{Dir: l.stateDir}
	policyName := func() string {
		rec, err := store.Load(sock)
		if err != nil || rec == nil {
			return ""
		}
		return rec.Policy
	}
	ag := l.startAgent(bin, "alice", policy)
	eventually(t, 20*time.Second, func() (bool, string) {
		return policyName() == "Alice's IPSec", "the agent has not assigned the policy: " + policyName()
	})

	text := strings.Replace(string(kb), `assign = "Alice's IPSec"`, `assign = "Alice with a lockout"`, 1)
	l.writeFile("alice-bob/agent.toml", blockSSH(text), 0o644)
	mark := len(ag.log.String())
	out, err := exec.Command(bin, "apply", "--socket", sock, "--state-dir", l.stateDir, "--confirm", "4s", "-f", policy).CombinedOutput()
	if err != nil {
		t.Fatalf("apply --confirm: %v\n%s", err, out)
	}
	ag.waitLog(5*time.Second, mark, "holding off")
	if policyName() != "Alice with a lockout" {
		t.Fatalf("apply --confirm did not assign the new policy (%q):\n%s", policyName(), out)
	}
	// The watchdog goes away, as in a reboot: the agent owns the timer.
	conf, _ := store.LoadConfirmation(sock)
	if conf == nil || conf.Watchdog <= 0 {
		t.Fatalf("no watchdog recorded: %+v", conf)
	}
	syscall.Kill(conf.Watchdog, syscall.SIGKILL)
	eventually(t, 4*time.Second+5*time.Second, func() (bool, string) {
		c, _ := store.LoadConfirmation(sock)
		return c == nil && policyName() == "Alice's IPSec", fmt.Sprintf("policy %q, pending %v", policyName(), c != nil)
	})
	// The file still holds the reverted change: the agent keeps its hands
	// off it for several checks.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for until := time.Now().Add(3 * time.Second); time.Now().Before(until); <-tick.C {
		if policyName() != "Alice's IPSec" {
			t.Fatalf("the agent assigned the reverted file again:\n%s", ag.log.String())
		}
	}
	if !strings.Contains(ag.log.String(), "is the change reverted at") {
		t.Errorf("the agent does not say why it holds off:\n%s", ag.log.String())
	}
	// A new edit is assigned as usual.
	mark = len(ag.log.String())
	l.writeFile("alice-bob/agent.toml", strings.Replace(string(kb), "destination_port = 6668", "destination_port = 6669", 1), 0o644)
	ag.waitLog(10*time.Second, mark, "no longer holding off")
	eventually(t, 10*time.Second, func() (bool, string) {
		rec, _ := store.Load(sock)
		return rec != nil && len(rec.Conns) > 0 && strings.Contains(rec.Conns[0].View, "6669"), "the edit (port 6669) is not assigned"
	})

	// A deadline that passes while nothing runs (agent stopped, watchdog
	// gone: a reboot) is honoured when the agent starts.
	if err := ag.stop(); err != nil {
		t.Fatalf("agent stop: %v", err)
	}
	l.writeFile("alice-bob/agent.toml", blockSSH(text), 0o644)
	out, err = exec.Command(bin, "apply", "--socket", sock, "--state-dir", l.stateDir, "--confirm", "2s", "-f", policy).CombinedOutput()
	if err != nil {
		t.Fatalf("apply --confirm: %v\n%s", err, out)
	}
	conf, _ = store.LoadConfirmation(sock)
	if conf == nil {
		t.Fatal("no pending confirmation")
	}
	syscall.Kill(conf.Watchdog, syscall.SIGKILL)
	eventually(t, 5*time.Second, func() (bool, string) {
		return time.Now().After(conf.Deadline), "the deadline has not passed"
	})
	if policyName() != "Alice with a lockout" {
		t.Fatalf("something reverted without watchdog or agent: %q", policyName())
	}
	l.startAgent(bin, "alice", policy)
	eventually(t, 10*time.Second, func() (bool, string) {
		c, _ := store.LoadConfirmation(sock)
		return c == nil && policyName() == "Alice's IPSec", fmt.Sprintf("after the agent started: policy %q, pending %v", policyName(), c != nil)
	})
}
