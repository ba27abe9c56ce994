package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

func TestAppliesAtStartAndRestoresWhatIsUnloaded(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.eventually("the policy is applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	if len(h.srv.SharedIDs()) != 1 {
		t.Fatalf("charon has secrets %v, want the rule's one", h.srv.SharedIDs())
	}
	loads := h.srv.Count("load-conn")

	// Nothing changed: a check sends nothing.
	h.tick()
	h.tick()
	if n := h.srv.Count("load-conn"); n != loads {
		t.Fatalf("a check with nothing changed sent %d load-conn", n-loads)
	}

	// A stray `swanctl --unload-conn` and unload of the secret.
	c := h.client()
	if err := c.UnloadConn(context.Background(), aliceConn); err != nil {
		t.Fatal(err)
	}
	if err := c.UnloadShared(context.Background(), h.srv.SharedIDs()[0]); err != nil {
		t.Fatal(err)
	}
	h.eventually("the unloaded connection and secret are restored", func() bool {
		return slices.Contains(h.srv.ConnNames(), aliceConn) && len(h.srv.SharedIDs()) == 1
	})
	h.eventually("the repair is logged with the rule", h.logHas(`restored 1 rule charon had lost ("Abczz with Bob")`))
}

// The guard table removed under swanmgr (nft delete table): the full check,
// which Engine.Assign's up-to-date check makes, puts it back; the cheap
// checks in between do not call Engine.Assign.
func TestFullCheckRestoresTheGuard(t *testing.T) {
	h := newHarness(t)
	h.full = 200 * time.Millisecond
	h.start()
	h.eventually("applied with its guard", func() bool {
		h.fw.mu.Lock()
		defer h.fw.mu.Unlock()
		return slices.Contains(h.srv.ConnNames(), aliceConn) && h.fw.live != nil
	})
	h.fw.mu.Lock()
	h.fw.live = nil
	h.fw.mu.Unlock()
	start := time.Now()
	h.eventually("the guard is installed again", func() bool {
		h.fw.mu.Lock()
		defer h.fw.mu.Unlock()
		return h.fw.live != nil
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the guard came back after %v", took)
	}
	// Cheap checks: get-conns and get-shared, not the whole record.
	loads := h.srv.Count("load-conn")
	for i := 0; i < 3; i++ {
		h.tick()
	}
	if n := h.srv.Count("load-conn"); n != loads {
		t.Errorf("cheap checks sent %d load-conn", n-loads)
	}
}

func TestCharonRestartIsRepairedOnReconnect(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	h.eventually("watching SA events", func() bool { return h.srv.Subscribers("child-updown") > 0 })

	// A restart: charon forgets everything and drops its clients. The
	// agent learns it from its event stream closing, not from a tick.
	c := h.client()
	c.UnloadConn(context.Background(), aliceConn)
	c.UnloadShared(context.Background(), h.srv.SharedIDs()[0])
	h.srv.Disconnect()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(h.srv.ConnNames(), aliceConn) {
		if time.Now().After(deadline) {
			t.Fatalf("the policy was not restored after the disconnect without a tick\n%s", h.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Told by the event stream closing, or, when the unloads above woke a
	// check that was talking to charon at the moment it went, by that
	// command failing (seen once under -race in CI): either way no tick.
	h.eventually("the loss is logged", func() bool { return h.logHas("went away")() || h.logHas("lost charon at")() })
	h.eventually("the restore is logged", h.logHas(`restored 1 rule charon had lost ("Abczz with Bob")`))
}

func TestBrokenEditIsRefusedAndTheAssignmentStays(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	loads := h.srv.Count("load-conn")

	h.write("alice.toml", strings.Replace(alicePolicy, `security = "high"`, `security = "hihg"`, 1), 0o644)
	h.eventually("the broken file is refused with file:line", h.logHas(h.policy+`:17: filter_action "Encrypt Abczz": security "hihg"`))
	h.eventually("the refusal says the assignment stays", h.logHas(`policy "Alice's IPSec" stays assigned`))
	if n := strings.Count(h.log.String(), "refused"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once until the file changes", n)
	}
	h.tick()
	if n := strings.Count(h.log.String(), "refused"); n != 1 {
		t.Errorf("after another check the refusal was logged %d times, want once", n)
	}
	if n := h.srv.Count("load-conn"); n != loads || !slices.Contains(h.srv.ConnNames(), aliceConn) {
		t.Fatalf("the broken edit changed charon (%d load-conn, connections %v)", n-loads, h.srv.ConnNames())
	}

	// charon loses the connection while the file is broken: the last good
	// policy comes back.
	h.client().UnloadConn(context.Background(), aliceConn)
	h.eventually("the last good policy is restored while the file is broken", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })

	// A good edit: a second port, applied as a change of the rule.
	good := strings.Replace(alicePolicy, "  destination_port = 6667\n", "  destination_port = 6667\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.31.67.244\"\n  protocol = \"tcp\"\n  destination_port = 6668\n", 1)
	h.write("alice.toml", good, 0o644)
	h.eventually("the good edit is applied", h.logHas(`changed "Abczz with Bob"`))
	body, _ := h.srv.Conn(aliceConn)
	if ch, _ := body.Get("children").(*govici.Message); ch == nil || ch.Get(aliceConn+"-2") == nil {
		t.Fatalf("charon's connection lacks the new filter's child: %v", body)
	}
}

func TestSIGHUPRereadsAndKeyFileChangeIsSeen(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.eventually("applied at start", func() bool { return len(h.srv.SharedIDs()) == 1 })
	id := h.srv.SharedIDs()[0]
	before, _ := h.srv.Shared(id)

	h.write("alice-bob.psk", "lab-only: a new key for Alice and Bob 9876543210\n", 0o600)
	h.eventually("the new key is loaded", func() bool {
		now, _ := h.srv.Shared(id)
		return now.Data != before.Data
	})
	h.eventually("the key file's change is logged", h.logHas("alice-bob.psk changed: read again and valid"))

	select {
	case h.reload <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent took no reload")
	}
	h.eventually("the reload is logged", h.logHas("reload requested"))
}

func TestStartRulesAreInitiatedWithBackoffAndReasons(t *testing.T) {
	h := newHarness(t)
	h.srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		r.Event("control-log", vicitest.Msg("group", "IKE", "level", "1", "msg", "initiating IKE_SA sm-abczz-with-bob[1] to 172.31.67.244"))
		r.Event("control-log", vicitest.Msg("group", "IKE", "level", "1", "msg", "received NO_PROPOSAL_CHOSEN notify error"))
		return vicitest.Failed("establishing CHILD_SA 'sm-abczz-with-bob-1' failed")
	})
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })

	// Down for the first time: charon's own start action gets one step.
	h.tick()
	h.tick()
	if n := h.srv.Count("initiate"); n != 0 {
		t.Fatalf("initiated %d times before the first backoff step passed", n)
	}
	h.clock.Add(2 * time.Second)
	h.eventually("the first initiate fails with the reason", h.logHas(`rule "Abczz with Bob" failed (attempt 1, 1 of its CHILD_SAs down): sm-abczz-with-bob-1: no common security method`))
	if !strings.Contains(h.log.String(), "the peer may also have no rule for this traffic at all") || !strings.Contains(h.log.String(), "next try in 2s") {
		t.Fatalf("the failure lacks the peer hint or the next try:\n%s", h.log)
	}

	// No hot loop: checks before the backoff passed initiate nothing.
	for i := 0; i < 5; i++ {
		h.tick()
	}
	if n := h.srv.Count("initiate"); n != 1 {
		t.Fatalf("%d initiates before the backoff passed, want 1", n)
	}
	h.clock.Add(2 * time.Second)
	h.eventually("the second failure doubles the wait", h.logHas("keeps failing (attempt 2, 1 of its CHILD_SAs down): sm-abczz-with-bob-1: no common security method"))
	if !strings.Contains(h.log.String(), "next try in 4s") {
		t.Fatalf("the second failure's wait is not 4s:\n%s", h.log)
	}
	h.clock.Add(4 * time.Second)
	h.eventually("third attempt", h.logHas("(attempt 3,"))
	h.clock.Add(8 * time.Second)
	h.eventually("fourth attempt, capped", h.logHas("(attempt 4,"))
	if !strings.Contains(h.log.String(), "(attempt 4, 1 of its CHILD_SAs down): sm-abczz-with-bob-1: no common security method") || strings.Count(h.log.String(), "next try in 8s") != 2 {
		t.Fatalf("the backoff is not capped at 8s:\n%s", h.log)
	}

	// The SA comes up (the peer fixed its side): the recovery is logged.
	h.srv.SetSAs(vicitest.Msg(aliceConn, vicitest.Msg("uniqueid", "1", "state", "ESTABLISHED", "local-host", "172.16.98.231", "remote-host", "172.31.67.244",
		"child-sas", vicitest.Msg("sm-abczz-with-bob-1-1", vicitest.Msg("name", "sm-abczz-with-bob-1", "uniqueid", "2", "state", "INSTALLED",
			"local-ts", []string{"172.16.98.231/32[tcp]"}, "remote-ts", []string{"172.31.67.244/32[tcp/6667]"})))))
	h.eventually("the recovery is logged", h.logHas(`rule "Abczz with Bob" is up again after 4 failed attempts`))
}

func TestOneAgentPerSocketAndExitLeavesTheAssignment(t *testing.T) {
	h := newHarness(t)
	h.start()
	// The apply has finished (its log line): a stop while it runs rolls
	// it back, as it should.
	h.eventually("applied at start", func() bool {
		return strings.Contains(h.log.String(), "applied policy") && slices.Contains(h.srv.ConnNames(), aliceConn)
	})

	second, err := New(h.config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := second.Run(ctx); !errors.Is(err, assign.ErrAgentRunning) {
		t.Fatalf("a second agent for the same socket: got %v, want ErrAgentRunning", err)
	}

	unloads := h.srv.Count("unload-conn")
	h.cancel()
	select {
	case err := <-h.done:
		h.stopped = true
		if err != nil {
			t.Fatalf("Run after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not stop")
	}
	if h.srv.Count("unload-conn") != unloads || !slices.Contains(h.srv.ConnNames(), aliceConn) {
		t.Fatalf("stopping the agent changed charon: connections %v", h.srv.ConnNames())
	}
	if !strings.Contains(h.log.String(), "the assignment stays in place") {
		t.Fatalf("the stop is not logged:\n%s", h.log)
	}
	// Its lock is free again.
	third, _ := New(h.config())
	ctx3, cancel3 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- third.Run(ctx3) }()
	time.Sleep(0) // let it start; the assertion below polls
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.log.String(), "agent started") || strings.Count(h.log.String(), "agent started") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("an agent after the first stopped did not start:\n%s", h.log)
		}
		select {
		case err := <-done:
			t.Fatalf("the next agent failed: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel3()
	<-done
}

func TestInvalidPolicyAtStartIsAnError(t *testing.T) {
	h := newHarness(t)
	h.write("alice.toml", strings.Replace(alicePolicy, `filter_action = "Encrypt Abczz"`, `filter_action = "Encrypt Abczzz"`, 1), 0o644)
	a, err := New(h.config())
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), h.policy+":") {
		t.Fatalf("Run with an invalid policy: got %v, want the file:line problem", err)
	}
	if n := h.srv.Count("load-conn"); n != 0 {
		t.Fatalf("an invalid policy sent %d load-conn", n)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		if got := backoff(n, time.Second, 10*time.Second); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// An SA the peer narrowed is up but carries none of the filter's traffic:
// said once with initiate's words, not initiated again.
func TestNarrowedSAIsReportedOnce(t *testing.T) {
	h := newHarness(t)
	h.srv.SetSAs(vicitest.Msg(aliceConn, vicitest.Msg("uniqueid", "1", "state", "ESTABLISHED", "local-host", "172.16.98.231", "remote-host", "172.31.67.244",
		"child-sas", vicitest.Msg("sm-abczz-with-bob-1-1", vicitest.Msg("name", "sm-abczz-with-bob-1", "uniqueid", "2", "state", "INSTALLED",
			"local-ts", []string{"172.16.98.231/32[tcp]"}, "remote-ts", []string{"172.31.67.244/32[tcp/6668]"})))))
	h.start()
	h.eventually("the narrowed SA is reported", h.logHas(`rule "Abczz with Bob" is up but does not carry all of its traffic: sm-abczz-with-bob-1: the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to remote 172.31.67.244/32[tcp/6668] instead of 172.31.67.244/32[tcp/6667]`))
	// Reloads look at the SAs again each time.
	for i := 0; i < 3; i++ {
		h.clock.Add(time.Minute)
		select {
		case h.reload <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatal("the agent took no reload")
		}
	}
	h.eventually("three reloads", func() bool { return strings.Count(h.log.String(), "reload requested") == 3 })
	h.tick() // the third reload's look is done once the next tick is taken
	if n := strings.Count(h.log.String(), "does not carry all of its traffic"); n != 1 {
		t.Errorf("the narrowed SA was reported %d times, want once:\n%s", n, h.log)
	}
	if n := h.srv.Count("initiate"); n != 0 {
		t.Errorf("a narrowed but installed SA was initiated %d times", n)
	}
}

// A policy file written in place (truncated, then filled) is not read
// half-way: the agent acts once the file has been still for a moment.
func TestHalfWrittenFileIsNotRead(t *testing.T) {
	h := newHarness(t)
	h.settle = 2 * time.Second // longer than the checks below take, however slow the machine
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	good := strings.Replace(alicePolicy, `name = "Abczz with Bob"`, `name = "Abczz with Bob, edited"`, 1)
	h.write("alice.toml", good[:len(good)/2], 0o644) // the first half, as a slow writer leaves it
	for i := 0; i < 5; i++ {
		h.tick() // checks while the file is half written
		time.Sleep(20 * time.Millisecond)
	}
	h.write("alice.toml", good, 0o644)
	h.eventually("the complete file is applied", h.logHas(`added "Abczz with Bob, edited"`))
	if strings.Contains(h.log.String(), "refused") {
		t.Fatalf("the half-written file was read:\n%s", h.log)
	}
}

// Someone replaces swanmgr's connection with other settings under the same
// name (`swanctl --load-conns` of a file that has it): the full check sees
// charon's copy differ and loads swanmgr's again.
func TestReplacedConnectionIsRepaired(t *testing.T) {
	h := newHarness(t)
	h.full = 100 * time.Millisecond
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })

	// The same rule, another port: rendered as swanmgr would, loaded by
	// someone else.
	other := newHarness(t)
	other.write("alice.toml", strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 9999", 1), 0o644)
	a, err := New(other.config())
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.read()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := render.ConnMessage(*p.conn(aliceConn))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.client().LoadConn(context.Background(), aliceConn, msg); err != nil {
		t.Fatal(err)
	}
	remoteTS := func() string {
		body, _ := h.srv.Conn(aliceConn)
		ch, _ := body.Get("children").(*govici.Message)
		if ch == nil {
			return ""
		}
		c, _ := ch.Get(aliceConn + "-1").(*govici.Message)
		if c == nil {
			return ""
		}
		ts, _ := c.Get("remote_ts").([]string)
		return strings.Join(ts, ",")
	}
	if !strings.Contains(remoteTS(), "9999") {
		t.Fatalf("the replacement did not take: remote_ts %q", remoteTS())
	}
	h.eventually("swanmgr's settings are loaded again", func() bool { return strings.Contains(remoteTS(), "6667") })
	h.eventually("the repair is logged", h.logHas(`charon's copy of rule "Abczz with Bob" was replaced by someone else: loading swanmgr's again`))
	h.eventually("and what was done", h.logHas(`loaded again as swanmgr had loaded it "Abczz with Bob"`))
}

func TestNamesAreCapped(t *testing.T) {
	var rules []string
	for i := 0; i < 12; i++ {
		rules = append(rules, fmt.Sprintf("%q", fmt.Sprintf("Peer %d", i)))
	}
	if got, want := names(rules), `"Peer 0", "Peer 1", "Peer 2", "Peer 3", "Peer 4", "Peer 5", "Peer 6", "Peer 7", "Peer 8", "Peer 9" and 2 more`; got != want {
		t.Errorf("names(12 rules) = %s, want %s", got, want)
	}
	if got := names(rules[:2]); got != `"Peer 0", "Peer 1"` {
		t.Errorf("names(2 rules) = %s", got)
	}
}

// Two rules to one peer share its connection: the agent's lines name both.
func TestRulesSharingAConnectionAreNamed(t *testing.T) {
	h := newHarness(t)
	two := strings.Replace(alicePolicy, "[[filter_action]]", `[[filter_list]]
name = "Other to Bob's PC"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6697

[[filter_action]]`, 1) + `  [[policy.rule]]
  name = "Other with Bob"
  filter_list = "Other to Bob's PC"
  filter_action = "Encrypt Abczz"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
`
	h.write("alice.toml", two, 0o644)
	h.srv.Handle("initiate", func(r *vicitest.Request) *govici.Message {
		r.Event("control-log", vicitest.Msg("group", "IKE", "level", "1", "msg", "received AUTHENTICATION_FAILED notify error"))
		return vicitest.Failed("establishing CHILD_SA failed")
	})
	h.start()
	h.eventually("applied at start", func() bool { return len(h.srv.ConnNames()) > 0 })
	if n := len(h.srv.ConnNames()); n != 1 {
		t.Fatalf("charon has %d connections %v, want the two rules in one", n, h.srv.ConnNames())
	}
	h.tick()
	h.clock.Add(2 * time.Second)
	h.eventually("the failure names both rules", h.logHas(`rules "Abczz with Bob", "Other with Bob" failed (attempt 1, 2 of its CHILD_SAs down)`))
	h.eventually("and the initiate", h.logHas(`rules "Abczz with Bob", "Other with Bob" should be up and are not`))
}

// A policy folder: a file added with a mistake is refused; fixed in place
// afterwards (which leaves the folder's own modification time alone), it
// is read again and applied, although the last good policy never had it.
func TestFolderFileFixedInPlaceIsSeen(t *testing.T) {
	h := newHarness(t)
	if err := os.Mkdir(filepath.Join(h.dir, "alice.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write("alice.d/00-alice.toml", strings.Replace(alicePolicy, `"alice-bob.psk"`, `"../alice-bob.psk"`, 1), 0o644)
	h.policy = filepath.Join(h.dir, "alice.d")
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })

	second := "[[filter_list]]\nname = \"To Carol\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"172.31.67.245\"\n" +
		"[[policy]]\nname = \"Alice's IPSec\"\n  [[policy.rule]]\n  name = \"Carol\"\n  filter_list = \"To Carol\"\n  filter_action = \"Encrypt Abczzz\"\n" +
		"  authentication = [ { method = \"psk\", secret_file = \"../alice-bob.psk\" } ]\n"
	added := filepath.Join(h.policy, "10-carol.toml")
	h.write("alice.d/10-carol.toml", second, 0o644)
	h.eventually("the added file is refused with its line", h.logHas(added+`:11: policy "Alice's IPSec" rule "Carol": filter_action "Encrypt Abczzz" not found`))
	dirBefore, err := os.Stat(h.policy)
	if err != nil {
		t.Fatal(err)
	}
	// Fixed in place, as an editor without a rename or `cat >` does.
	f, err := os.OpenFile(added, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Replace(second, "Abczzz", "Abczz", 1)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if dirAfter, err := os.Stat(h.policy); err != nil || !dirAfter.ModTime().Equal(dirBefore.ModTime()) {
		t.Fatalf("the folder's modification time moved (%v): the test would not show anything", err)
	}
	h.eventually("the fixed file is applied", func() bool { return slices.Contains(h.srv.ConnNames(), "sm-carol") })
	// The log line comes when the apply ends, after charon has it.
	h.eventually("the log says the rule was added", h.logHas(`added "Carol"`))
	// The file taken out: its rule goes, and the log says which file.
	if err := os.Remove(added); err != nil {
		t.Fatal(err)
	}
	h.eventually("the removed file's rule goes", func() bool { return !slices.Contains(h.srv.ConnNames(), "sm-carol") })
	h.eventually("the log names the file taken out", h.logHas(added+" no longer read: the policy read again without it and valid"))
}

// The policy names a key file that is not there yet (a peer added before
// its key is copied): refused; the key file created, the policy is read
// again and applied, with no other change to wake the agent.
func TestKeyFileCreatedAfterRefusalIsSeen(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	h.write("alice.toml", strings.Replace(alicePolicy, `secret_file = "alice-bob.psk"`, `secret_file = "bob-new.psk"`, 1), 0o644)
	h.eventually("the policy naming a missing key file is refused", h.logHas("bob-new.psk"))
	if !strings.Contains(h.log.String(), "refused") {
		t.Fatalf("no refusal logged:\n%s", h.log)
	}
	// Watching the missing file is not a change that reads and refuses
	// the same policy again.
	for range 3 {
		h.tick()
	}
	if n := strings.Count(h.log.String(), "refused"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, h.log)
	}
	shared := h.srv.Count("load-shared")
	h.write("bob-new.psk", "lab-only: Bob's new key 0123456789abcdef\n", 0o600)
	h.eventually("the policy is applied once the key file exists", func() bool { return h.srv.Count("load-shared") > shared })
	h.eventually("the log says the new key file was read", h.logHas("bob-new.psk changed: read again and valid"))
}

// A key file rewritten in place with its size and modification time kept
// (touch -r, a tool that keeps times) looks unchanged to the watcher's
// stat; read anyway with the policy, its new bytes differ from the
// watcher's hash. The agent must settle after one more read, not read
// the policy again at every check.
func TestStaleStatSettles(t *testing.T) {
	h := newHarness(t)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	psk := filepath.Join(h.dir, "alice-bob.psk")
	if err := os.Chtimes(psk, old, old); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.eventually("applied at start", func() bool { return slices.Contains(h.srv.ConnNames(), aliceConn) })
	h.write("alice-bob.psk", "lab-only: a key for Alice and Bob 9876543210\n", 0o600) // same length
	if err := os.Chtimes(psk, old, old); err != nil {
		t.Fatal(err)
	}
	h.write("alice.toml", strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 16667", 1), 0o644)
	if err := os.Chtimes(h.policy, old, old); err != nil {
		t.Fatal(err)
	}
	h.eventually("the edit is applied", h.logHas(`changed "Abczz with Bob"`))
	for range 5 {
		h.tick()
	}
	n := h.agent.parses.Load()
	for range 10 {
		h.tick()
	}
	if more := h.agent.parses.Load() - n; more != 0 {
		t.Errorf("the policy was read %d more times over 10 checks with nothing changed:\n%s", more, h.log)
	}
}

// A file written between the agent's read of it and the fingerprint taken
// after (an editor writing in place on a loaded machine) must not leave
// the fingerprint of what was not parsed: CI's -race run met it once, and
// the agent then never read the change.
func TestTornReadLeavesNoFingerprint(t *testing.T) {
	for _, folder := range []bool{false, true} {
		h := newHarness(t)
		if folder {
			if err := os.Mkdir(filepath.Join(h.dir, "alice.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			h.write("alice.d/00-alice.toml", strings.Replace(alicePolicy, `"alice-bob.psk"`, `"../alice-bob.psk"`, 1), 0o644)
			h.policy = filepath.Join(h.dir, "alice.d")
		}
		a, err := New(h.config())
		if err != nil {
			t.Fatal(err)
		}
		a.backend = render.LibIPsec
		data, err := model.ReadFile(h.policy)
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.parse(data)
		if err != nil || p.fp == "" {
			t.Fatalf("folder %v: files unchanged since the read: fingerprint %q, %v", folder, p.fp, err)
		}
		// The policy is read, then written before the fingerprint.
		edited := strings.Replace(alicePolicy, "destination_port = 6667", "destination_port = 6668", 1)
		if folder {
			h.write("alice.d/00-alice.toml", strings.Replace(edited, `"alice-bob.psk"`, `"../alice-bob.psk"`, 1), 0o644)
		} else {
			h.write("alice.toml", edited, 0o644)
		}
		p, err = a.parse(data)
		if err != nil || p.fp != "" {
			t.Errorf("folder %v: a file written after it was read: fingerprint %q (want none), %v", folder, p.fp, err)
		}
	}
}

// A converge that keeps failing (here charon refuses the connection) is
// tried again after the check interval, then after twice that and so on
// up to maxConvergeBackoff, not at every check: at thousands of rules
// every try is a whole apply. A reload tries at once.
func TestFailingConvergeBacksOff(t *testing.T) {
	h := newHarness(t)
	h.srv.Handle("load-conn", func(r *vicitest.Request) *govici.Message {
		return vicitest.Failed("unknown option: bogus, config discarded")
	})
	h.start()
	h.eventually("the first converge fails", h.logHas("converging failed"))
	attempts := func() int {
		// The agent takes the second tick once the first one's check
		// has finished.
		h.tick()
		h.tick()
		return h.srv.Count("load-conn")
	}
	n := attempts()
	for i := 0; i < 5; i++ {
		if got := attempts(); got != n {
			t.Fatalf("%d tries of a failing converge within its backoff, want none:\n%s", got-n, h.log)
		}
	}
	h.clock.Add(time.Second + time.Millisecond)
	if got := attempts(); got != n+1 {
		t.Fatalf("after the first wait (1 s): %d tries, want 1\n%s", got-n, h.log)
	}
	h.clock.Add(time.Second + time.Millisecond) // the second wait is 2 s
	if got := attempts(); got != n+1 {
		t.Fatalf("1 s into the second wait: %d tries, want none", got-n-1)
	}
	h.clock.Add(time.Second)
	if got := attempts(); got != n+2 {
		t.Fatalf("after the second wait: %d tries, want 1", got-n-1)
	}
	if !strings.Contains(h.log.String(), "trying again in 1s") || strings.Count(h.log.String(), "converging failed") != 1 {
		t.Errorf("the failure is not logged once with its wait:\n%s", h.log)
	}
	select {
	case h.reload <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent took no reload")
	}
	h.eventually("a reload tries at once", func() bool { return h.srv.Count("load-conn") > n+2 })
}
