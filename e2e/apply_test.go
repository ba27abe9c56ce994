package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/vici"
)

// send carries a message from one host to another and checks, with
// tcpdump on the receiver, that the wire carried ESP and never the payload.
func (l *testLab) sendEncrypted(from, to string, port int) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, dst := l.Host(from), l.Host(to)
	capture, err := dst.StartCapture(ctx, fmt.Sprintf("host %s", src.Addr))
	if err != nil {
		l.t.Fatal(err)
	}
	msg := fmt.Sprintf("Abczz secret from %s to %s:%d %d", from, to, port, time.Now().UnixNano())
	got, err := lab.Send(ctx, src, dst, "tcp", port, []byte(msg))
	if err != nil {
		capture.Stop()
		l.t.Fatalf("%s → %s tcp/%d: %v", from, to, port, err)
	}
	if string(got) != msg {
		l.t.Fatalf("%s received %q, want %q", to, got, msg)
	}
	// Wait until the capture has seen ESP, then look at everything.
	if err := capture.WaitFor(ctx, func(s string) bool { return strings.Contains(s, "ESP(") }); err != nil {
		l.t.Fatalf("no ESP seen on %s's wire: %v\n%s", to, err, strings.Join(capture.Lines(), "\n"))
	}
	lines := capture.Stop()
	sum := lab.Summarize(lines, port)
	if sum.ClearTo[port] > 0 {
		l.t.Fatalf("%d clear packets to/from port %d on %s's wire:\n%s", sum.ClearTo[port], port, to, strings.Join(lines, "\n"))
	}
	for _, line := range lines {
		if strings.Contains(line, msg[:20]) {
			l.t.Fatalf("the payload crossed %s's wire in clear: %q", to, line)
		}
	}
}

// 1. The knowledge-base scenario: Alice and Bob apply their examples, a
// TCP exchange in each direction succeeds, only ESP crosses the wire.
func TestKnowledgeBaseScenario(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))

	kids := l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	for name, ch := range kids {
		if ch.Protocol != "ESP" || ch.EncrAlg != "AES_GCM_16" || ch.EncrKeysize != 256 {
			t.Errorf("%s: %s %s-%d, want the rule's proposal ESP AES_GCM_16-256", name, ch.Protocol, ch.EncrAlg, ch.EncrKeysize)
		}
	}
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)

	after := installed(l.sas("alice"))
	if b := after["sm-abczz-with-bob-1"]; b.BytesOut == 0 || b.BytesIn == 0 {
		t.Errorf("alice's SA for tcp/6667 counted %d bytes out, %d in; want traffic both ways", b.BytesOut, b.BytesIn)
	}
}

// 2. Alice, Bob and Eve: two rules with different keys; Bob and Eve have
// nothing with each other; a wrong key on Eve fails with the reason.
func TestAliceBobEve(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	l.mustApply("bob", l.example("alice-bob-eve/bob.toml"))
	l.mustApply("eve", l.example("alice-bob-eve/eve.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-syslog-with-eve-1")
	for _, host := range []string{"bob", "eve"} {
		for _, sa := range l.sas(host) {
			if sa.RemoteHost != l.Host("alice").Addr.String() {
				t.Errorf("%s has an SA with %s; only Alice is its peer", host, sa.RemoteHost)
			}
		}
	}

	// Eve now has a different key for Alice.
	wrong := l.writeFile("alice-bob-eve/wrong.psk", "lab-only: a key Alice does not have 0123456789\n", 0o600)
	eve, _ := os.ReadFile(l.example("alice-bob-eve/eve.toml"))
	l.writeFile("alice-bob-eve/eve-wrong.toml", strings.ReplaceAll(string(eve), `"alice-eve.psk"`, `"`+wrong+`"`), 0o644)
	l.mustApply("eve", l.example("alice-bob-eve/eve-wrong.toml"))
	// The changed rule's SA was torn down on Eve; Alice's side follows.
	r := l.swanmgr("alice", "terminate", "--rule", "Syslog with Eve")
	if r.code != 0 {
		t.Fatalf("terminate: %s", r)
	}
	r = l.swanmgr("alice", "initiate", "--rule", "Syslog with Eve")
	if r.code == 0 || !strings.Contains(r.stderr, `rule "Syslog with Eve"`) || !strings.Contains(r.stderr, "authentication failed: preshared keys or certificates differ") {
		t.Fatalf("initiate with a wrong key on Eve: want a failure naming the rule and the reason; got %s", r)
	}
}

// 3. Bob copies Alice's filters literally (the article's troubleshooting
// case): the SA fails and initiate says why.
func TestReversedPorts(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	bob, _ := os.ReadFile(l.example("alice-bob/bob.toml"))
	// "The necessary changes are obvious": Bob keeps the destination
	// ports of Alice's filters on Alice's side.
	literal := strings.NewReplacer(
		`source = "172.16.98.231"`, `source = "me"`,
		`destination = "me"`, `destination = "172.16.98.231"`,
	).Replace(string(bob))
	// The third filter becomes a duplicate (me → Alice 6668); drop it.
	literal = literal[:strings.LastIndex(literal, "  # Bob connects")] + literal[strings.Index(literal, "[[filter_action]]"):]
	l.writeFile("alice-bob/bob-literal.toml", literal, 0o644)
	l.mustApply("bob", l.example("alice-bob/bob-literal.toml"))
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	r := l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob")
	if r.code == 0 || !strings.Contains(r.stderr, "the peer's filters do not mirror yours: check for reversed addresses or ports") {
		t.Fatalf("initiate against reversed ports: want the mirror explanation; got %s", r)
	}
	t.Logf("initiate against Bob's literal copy:\n%s", r)
}

// 4. Minimal change, ownership and unassign.
func TestMinimalChangeAndOwnership(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	// A connection loaded by hand, not by swanmgr.
	hand := govici.NewMessage()
	hand.Set("remote_addrs", []string{"172.20.0.99"})
	hand.Set("local", mustMsg(map[string]any{"auth": "psk"}))
	hand.Set("remote", mustMsg(map[string]any{"auth": "psk"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.client("alice").LoadConn(ctx, "by-hand", hand); err != nil {
		t.Fatal(err)
	}

	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	l.mustApply("bob", l.example("alice-bob-eve/bob.toml"))
	l.mustApply("eve", l.example("alice-bob-eve/eve.toml"))
	before := l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-syslog-with-eve-1")
	ikeIDs := ikeIDsByConn(l.sas("alice"))

	// Re-apply unchanged: nothing is sent, nothing moves.
	_, off := l.logSince("alice", 0)
	r := l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	if !strings.Contains(r.stdout, "(0 load-conn") || !strings.Contains(r.stdout, "0 secrets loaded") || !strings.Contains(r.stdout, "0 added, 0 changed, 0 removed, 2 unchanged") || !strings.Contains(r.stdout, "as at the last apply") {
		t.Fatalf("unchanged re-apply: %s", r)
	}
	if logged, _ := l.logSince("alice", off); strings.Contains(logged, "vici connection") {
		t.Fatalf("unchanged re-apply reached charon's configuration:\n%s", logged)
	}
	// A comment changes the file but not the policy: swanmgr reads it
	// again, and still sends nothing.
	b, _ := os.ReadFile(l.example("alice-bob-eve/alice.toml"))
	commented := l.writeFile("alice-bob-eve/alice-commented.toml", string(b)+"\n# reviewed\n", 0o644)
	r = l.mustApply("alice", commented)
	if !strings.Contains(r.stdout, "(0 load-conn") || !strings.Contains(r.stdout, "0 secrets loaded") || strings.Contains(r.stdout, "as at the last apply") {
		t.Fatalf("re-apply of an equivalent file: %s", r)
	}
	if logged, _ := l.logSince("alice", off); strings.Contains(logged, "vici connection") {
		t.Fatalf("re-apply of an equivalent file reached charon's configuration:\n%s", logged)
	}
	same := installed(l.sas("alice"))
	for name, ch := range before {
		if same[name].UniqueID != ch.UniqueID {
			t.Errorf("%s: unique id %d → %d after an unchanged re-apply", name, ch.UniqueID, same[name].UniqueID)
		}
	}

	// Change one rule (Eve's port) on both ends: only it is reloaded.
	for _, h := range []string{"alice", "eve"} {
		b, _ := os.ReadFile(l.example("alice-bob-eve/" + h + ".toml"))
		l.writeFile("alice-bob-eve/"+h+"-515.toml", strings.ReplaceAll(string(b), "destination_port = 514", "destination_port = 515"), 0o644)
	}
	// plan names the SA the change would tear down, and changes nothing.
	r = l.swanmgr("alice", "plan", "--exit-code", "-f", l.example("alice-bob-eve/alice-515.toml"))
	if r.code != 3 || !strings.Contains(r.stdout, "~ Syslog with Eve") || !strings.Contains(r.stdout, "tears down IKE_SA sm-syslog-with-eve") || !strings.Contains(r.stdout, "= Abczz with Bob") {
		t.Fatalf("plan of a one-rule change: %s", r)
	}
	_, off = l.logSince("alice", 0)
	r = l.mustApply("alice", l.example("alice-bob-eve/alice-515.toml"))
	// Its SA is found (charon is asked for that connection's SAs only)
	// and torn down.
	if !strings.Contains(r.stdout, "(1 load-conn") || !strings.Contains(r.stdout, "0 added, 1 changed, 0 removed, 1 unchanged") || !strings.Contains(r.stdout, "1 SA of changed rules torn down") {
		t.Fatalf("one-rule change: %s", r)
	}
	logged, _ := l.logSince("alice", off)
	if re := regexp.MustCompile(`(added|updated|replaced) vici connection: (\S+)`); true {
		for _, m := range re.FindAllStringSubmatch(logged, -1) {
			if m[2] != "sm-syslog-with-eve" {
				t.Errorf("changing Eve's rule reloaded %s", m[2])
			}
		}
	}
	l.mustApply("eve", l.example("alice-bob-eve/eve-515.toml"))
	after := l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-syslog-with-eve-1")
	if after["sm-abczz-with-bob-1"].UniqueID != before["sm-abczz-with-bob-1"].UniqueID {
		t.Errorf("Bob's CHILD_SA changed (%d → %d) when only Eve's rule did", before["sm-abczz-with-bob-1"].UniqueID, after["sm-abczz-with-bob-1"].UniqueID)
	}
	if ids := ikeIDsByConn(l.sas("alice")); ids["sm-abczz-with-bob"] != ikeIDs["sm-abczz-with-bob"] {
		t.Errorf("Bob's IKE_SA changed (%d → %d) when only Eve's rule did", ikeIDs["sm-abczz-with-bob"], ids["sm-abczz-with-bob"])
	}

	// Unassign: swanmgr's connections and SAs go, the hand-made one stays.
	// Unloading a libipsec start connection closes its SAs itself; they
	// still count as torn down (issue 17: "0 SAs torn down").
	r = l.swanmgr("alice", "unassign")
	if r.code != 0 {
		t.Fatalf("unassign: %s", r)
	}
	if strings.Contains(r.stdout, " 0 SAs torn down") {
		t.Errorf("unassign of a policy with live SAs reports none torn down: %s", r.stdout)
	}
	conns, err := l.client("alice").Conns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(conns, ",") != "by-hand" {
		t.Fatalf("after unassign charon has %v; want only the hand-loaded connection", conns)
	}
	ids, err := l.client("alice").SharedIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("after unassign charon still has secrets %v", ids)
	}
}

func mustMsg(m map[string]any) *govici.Message {
	msg := govici.NewMessage()
	for k, v := range m {
		msg.Set(k, v)
	}
	return msg
}

func ikeIDsByConn(sas []vici.IKESA) map[string]uint64 {
	out := map[string]uint64{}
	for _, sa := range sas {
		if sa.State == "ESTABLISHED" {
			out[sa.Name] = sa.UniqueID
		}
	}
	return out
}

// 7. charon restarts (and forgets everything): the next apply restores it.
func TestDaemonRestart(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Host("alice").RestartCharon(ctx); err != nil {
		t.Fatal(err)
	}
	r := l.mustApply("alice", l.example("alice-bob/alice.toml"))
	if !strings.Contains(r.stdout, "charon had lost it") || !strings.Contains(r.stdout, "(1 load-conn") {
		t.Fatalf("apply after a charon restart did not restore the policy: %s", r)
	}
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.sendEncrypted("alice", "bob", 6667)
}

// 8. Two applies at once are serialized; the final state is the later one.
func TestConcurrentApplies(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	files := []string{l.example("alice-bob/alice.toml"), l.example("alice-bob-eve/alice.toml")}
	var wg sync.WaitGroup
	results := make([]result, len(files))
	finished := make([]time.Time, len(files))
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.swanmgr("alice", "apply", "-f", f)
			finished[i] = time.Now()
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("apply %s: %s", files[i], r)
		}
	}
	later := 0
	if finished[1].After(finished[0]) {
		later = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns, err := l.client("alice").Conns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := "sm-abczz-with-bob"
	if later == 1 {
		want = "sm-abczz-with-bob,sm-syslog-with-eve"
	}
	if strings.Join(conns, ",") != want {
		t.Fatalf("after two concurrent applies charon has %v; the later apply (%s) wants %s", conns, files[later], want)
	}
	// Each apply saw a consistent state: the later one reports what the
	// earlier one left.
	if later == 1 && !strings.Contains(results[1].stdout, "= Abczz with Bob") {
		t.Fatalf("the later apply did not see the earlier one's result (interleaved?): %s", results[1])
	}
	if later == 0 && !strings.Contains(results[0].stdout, "- Syslog with Eve") {
		t.Fatalf("the later apply did not see the earlier one's result (interleaved?): %s", results[0])
	}
}

// A peer that does not answer: initiate says so, naming the peer.
func TestPeerNotResponding(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "eve")
	if err := l.Host("eve").StopCharon(); err != nil {
		t.Fatal(err)
	}
	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	r := l.swanmgr("alice", "initiate", "--rule", "Syslog with Eve", "--quiet")
	if r.code != 1 || !strings.Contains(r.stderr, `rule "Syslog with Eve"`) || !strings.Contains(r.stderr, "no answer from 172.20.0.5") {
		t.Fatalf("initiate towards a silent peer: %s", r)
	}
}

// One of swanmgr's connections replaced under it with other settings
// (swanctl --load-conns of a file with its name): plan shows the drift,
// and an apply of the unchanged policy loads swanmgr's again and tears
// down the SA made with the other settings. Before, plan showed the drift
// and apply said "unchanged" and left the foreign copy, since the
// unchanged shortcut compared names only; the traffic it protects then
// had no SA.
func TestApplyRepairsAConnectionReplacedUnderIt(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	const conn = "sm-abczz-with-bob"
	replaced := filepath.Join(t.TempDir(), "swanctl.conf")
	if err := os.WriteFile(replaced, []byte("connections {\n"+replacement(conn)+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	swanctl := func(args ...string) string {
		t.Helper()
		out, err := l.Host("alice").Swanctl(ctx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("swanctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	swanctl("--load-conns", "--file", replaced)
	// An SA of the other settings, as the agent's or anyone's initiate
	// would make before a repair.
	swanctl("--initiate", "--child", conn+"-1")
	if p := l.swanmgr("alice", "plan", "-f", l.example("alice-bob/alice.toml")); p.code != 0 || !strings.Contains(p.stdout, "drift: charon's copy was replaced") {
		t.Fatalf("plan after the replacement: %s", p)
	}
	r := l.mustApply("alice", l.example("alice-bob/alice.toml"))
	if !strings.Contains(r.stdout, "drift") || !strings.Contains(r.stdout, "1 load-conn") || !strings.Contains(r.stdout, "torn down") {
		t.Fatalf("apply after the replacement did not load swanmgr's connection again: %s", r)
	}
	if conns := swanctl("--list-conns"); strings.Contains(conns, "9999") {
		t.Fatalf("charon still has the replaced connection:\n%s", conns)
	}
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	if sas := swanctl("--list-sas"); strings.Contains(sas, "9999") {
		t.Fatalf("an SA of the replaced settings is still up:\n%s", sas)
	}
	l.sendEncrypted("alice", "bob", 6667)
	if r := l.mustApply("alice", l.example("alice-bob/alice.toml")); !strings.Contains(r.stdout, "0 added, 0 changed, 0 removed, 1 unchanged") {
		t.Fatalf("apply after the repair: %s", r)
	}
}

// replacement is a swanctl.conf connection under swanmgr's name conn (to
// Bob) with other settings: its first child on Bob's tcp/9999.
func replacement(conn string) string {
	return "  " + conn + " {\n    remote_addrs = 172.31.67.244\n    local { auth = psk }\n    remote { auth = psk }\n" +
		"    children { " + conn + "-1 { remote_ts = 172.31.67.244[tcp/9999] } }\n  }\n"
}
