package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/cli"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/status"
)

// statusJSON runs `swanmgr status -o json` (plus args) on a host.
func (l *testLab) statusJSON(host string, args ...string) *status.Status {
	l.t.Helper()
	r := l.swanmgr(host, append([]string{"status", "-o", "json"}, args...)...)
	if r.code != 0 {
		l.t.Fatalf("status -o json on %s: %s", host, r)
	}
	var st status.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		l.t.Fatalf("status -o json on %s: %v\n%s", host, err, r.stdout)
	}
	return &st
}

// findRow returns the row of a rule's filter (1-based) with an SA, or
// without when none has one.
func findRow(st *status.Status, rule string, filter int) (status.SA, bool) {
	var found status.SA
	ok := false
	for _, r := range st.SAs {
		if r.Rule != nil && *r.Rule == rule && r.Filter != nil && *r.Filter == filter {
			if !ok || (r.HasSA && r.State == status.StateInstalled) {
				found, ok = r, true
			}
		}
	}
	return found, ok
}

// tableRowRE matches a row of the SA table: filter number, source, port,
// destination, port, protocol, tunnel endpoint, state.
func tableRowRE(r status.SA) *regexp.Regexp {
	num := "-"
	if r.Filter != nil {
		num = strconv.Itoa(*r.Filter)
	}
	q := regexp.QuoteMeta
	return regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%s\s+%s\s+%s\s+%s\s+%s\s+%s\s+%s\s+%s$`,
		q(num), q(status.AddressText(r.Source)), q(status.PortText(r.Source)), q(status.AddressText(r.Destination)),
		q(status.PortText(r.Destination)), q(status.ProtocolText(r.Protocol)), q(status.TunnelText(r)), q(r.State)))
}

// After the knowledge-base traffic Alice's status shows the rule's row:
// Bob's address, TCP, port 6667, the ESP algorithm and traffic both ways,
// in the table and the same in JSON.
func TestStatusKnowledgeBase(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")
	l.waitInstalled("bob", "sm-abczz-with-alice-1", "sm-abczz-with-alice-2", "sm-abczz-with-alice-3")
	l.sendEncrypted("alice", "bob", 6667)
	l.sendEncrypted("bob", "alice", 6668)

	tr := l.swanmgr("alice", "status")
	if tr.code != 0 {
		t.Fatalf("status: %s", tr)
	}
	st := l.statusJSON("alice")
	t.Logf("alice's status:\n%s", tr.stdout)

	row, ok := findRow(st, "Abczz with Bob", 1)
	if !ok || !row.HasSA {
		t.Fatalf("no SA for filter 1 of \"Abczz with Bob\" in %+v", st.SAs)
	}
	bob := l.Host("bob").Addr.String()
	switch {
	case row.State != status.StateInstalled:
		t.Errorf("state %q", row.State)
	case status.AddressText(row.Destination) != bob || row.Destination.Port == nil || *row.Destination.Port != 6667:
		t.Errorf("destination %+v, want %s port 6667", row.Destination, bob)
	case row.Protocol == nil || *row.Protocol != "tcp":
		t.Errorf("protocol %v", row.Protocol)
	case row.Security == nil || *row.Security.Encryption != "AES_GCM_16" || *row.Security.EncryptionKeySize != 256:
		t.Errorf("security %+v", row.Security)
	case *row.BytesIn == 0 || *row.BytesOut == 0:
		t.Errorf("bytes in %d, out %d: want traffic both ways", *row.BytesIn, *row.BytesOut)
	case row.TunnelEndpoint != nil || !row.HostToHostTunnel:
		t.Errorf("tunnel endpoint %v: the rule has none", *row.TunnelEndpoint)
	}

	// The table says the same: the row with these columns, and below it
	// the security and the exact traffic.
	m := tableRowRE(row).FindStringIndex(tr.stdout)
	if m == nil {
		t.Fatalf("the table has no row %s", tableRowRE(row))
	}
	detail := tr.stdout[m[1]:]
	if i := strings.Index(detail[1:], "\n  "); i > 0 && !strings.HasPrefix(detail[i+1:], "\n     ") {
		detail = detail[:i+1]
	}
	for _, want := range []string{"ESP AES_GCM_16-256", "PFS x25519" /* configured: first rekey */, row.Security.Text, status.TrafficText(row)} {
		if !strings.Contains(strings.Join(strings.Fields(detail), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the table's row for filter 1 lacks %q:\n%s", want, detail)
		}
	}
	// Every JSON row is in the table.
	for _, r := range st.SAs {
		if !tableRowRE(r).MatchString(tr.stdout) {
			t.Errorf("JSON row %s/%s (%s) is not in the table", r.Connection, r.Child, r.State)
		}
	}
	if len(st.IKESAs) != 1 || st.IKESAs[0].Remote.Address != bob || st.IKESAs[0].AuthRemote == nil || *st.IKESAs[0].AuthRemote != "pre-shared key" {
		t.Errorf("IKE SAs: %+v", st.IKESAs)
	}
	if s := st.Statistics; s.ActiveAssociations.Value == nil || *s.ActiveAssociations.Value != 3 ||
		*s.ConfidentialBytesSent.Value == 0 || *s.ConfidentialBytesReceived.Value == 0 || s.MainModes.Value != nil {
		t.Errorf("statistics: %+v", s)
	}
	if !strings.Contains(tr.stdout, "Main Modes (IKE_SAs established)     n/a") {
		t.Errorf("the table should show Main Modes as n/a (charon does not count them)")
	}
}

// A rule whose peer refuses it (Eve has no policy) shows as not
// established; the other rule stays up. --rule narrows the view.
func TestStatusRuleNotEstablished(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	l.mustApply("bob", l.example("alice-bob-eve/bob.toml"))
	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1")

	var st *status.Status
	eventually(t, 15*time.Second, func() (bool, string) {
		st = l.statusJSON("alice", "--rule", "Syslog with Eve")
		row, ok := findRow(st, "Syslog with Eve", 1)
		return ok && row.State == status.StateNotEstablished, fmt.Sprintf("Eve's rule: %+v", st.SAs)
	})
	for _, r := range st.SAs {
		if r.Rule == nil || *r.Rule != "Syslog with Eve" {
			t.Errorf("--rule \"Syslog with Eve\" shows a row of %v", r.Rule)
		}
	}
	r := l.swanmgr("alice", "status", "--rule", "syslog with eve")
	if r.code != 0 || !regexp.MustCompile(`(?m)^\s+1\s+172\.16\.98\.231\s+any\s+172\.20\.0\.5\s+514\s+UDP\s+none\s+not established$`).MatchString(r.stdout) {
		t.Errorf("status --rule: want Eve's filter not established; got %s", r)
	}
	if r := l.swanmgr("alice", "status", "--rule", "No such rule"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, `"Abczz with Bob"`) {
		t.Errorf("an unknown rule should be a usage error naming the rules: %s", r)
	}
	all := l.statusJSON("alice")
	if row, ok := findRow(all, "Abczz with Bob", 1); !ok || row.State != status.StateInstalled {
		t.Errorf("Bob's rule should stay up: %+v", row)
	}
}

// timedBuffer keeps what a command writes, line by line, with the time
// each line arrived.
type timedBuffer struct {
	mu    sync.Mutex
	part  []byte
	lines []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

func (b *timedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.part = append(b.part, p...)
	for {
		i := strings.IndexByte(string(b.part), '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, timedLine{now, string(b.part[:i])})
		b.part = b.part[i+1:]
	}
	return len(p), nil
}

func (b *timedBuffer) Lines() []timedLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]timedLine(nil), b.lines...)
}

// startSwanmgr runs a long-running swanmgr command in-process until the
// test ends.
func (l *testLab) startSwanmgr(host string, args ...string) *timedBuffer {
	l.t.Helper()
	h := l.Host(host)
	full := append([]string{"swanmgr", args[0], "--socket", h.Socket, "--state-dir", l.stateDir}, args[1:]...)
	out, errb := &timedBuffer{}, &timedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, full, out, errb) }()
	l.t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				l.t.Errorf("%s exited %d: %v", strings.Join(full, " "), code, errb.Lines())
			}
		case <-time.After(10 * time.Second):
			l.t.Errorf("%s did not stop", strings.Join(full, " "))
		}
	})
	return out
}

// jsonViews decodes the views of `status --watch -o json` (one per line).
func jsonViews(t *testing.T, lines []timedLine) ([]*status.Status, []time.Time) {
	t.Helper()
	var views []*status.Status
	var at []time.Time
	for _, l := range lines {
		var st status.Status
		if err := json.Unmarshal([]byte(l.text), &st); err != nil {
			t.Fatalf("watch -o json wrote a line that is not a view: %v\n%s", err, l.text)
		}
		views = append(views, &st)
		at = append(at, l.at)
	}
	return views, at
}

// `status --watch` on a non-terminal appends views; a new SA shows within
// a second of initiate although the interval is an hour (events, not
// polling); a charon restart is survived.
func TestStatusWatch(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1")
	if r := l.swanmgr("alice", "terminate", "--rule", "Abczz with Bob"); r.code != 0 {
		t.Fatalf("terminate: %s", r)
	}
	eventually(t, 10*time.Second, func() (bool, string) {
		n := len(installed(l.sas("alice")))
		return n == 0, fmt.Sprintf("%d CHILD_SAs still installed after terminate", n)
	})

	js := l.startSwanmgr("alice", "status", "--watch", "--interval", "1h", "-o", "json")
	table := l.startSwanmgr("alice", "status", "--watch", "--interval", "1h")
	eventually(t, 10*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		if len(views) == 0 {
			return false, "no view yet"
		}
		row, _ := findRow(views[len(views)-1], "Abczz with Bob", 1)
		return row.State == status.StateNotEstablished, fmt.Sprintf("filter 1 is %q", row.State)
	})
	before := len(js.Lines())

	start := time.Now()
	if r := l.swanmgr("alice", "initiate", "--rule", "Abczz with Bob", "--quiet"); r.code != 0 {
		t.Fatalf("initiate: %s", r)
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		row, _ := findRow(views[len(views)-1], "Abczz with Bob", 1)
		return row.State == status.StateInstalled, "no view with filter 1 installed"
	})
	views, at := jsonViews(t, js.Lines())
	for i := before; i < len(views); i++ {
		if row, _ := findRow(views[i], "Abczz with Bob", 1); row.State == status.StateInstalled {
			took := at[i].Sub(start)
			t.Logf("filter 1's new SA showed %v after initiate started (interval 1h)", took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("the new SA showed %v after initiate, want within 1 s", took)
			}
			break
		}
	}
	// The table watcher appended views, each with its time stamp.
	eventually(t, 5*time.Second, func() (bool, string) {
		var text []string
		for _, l := range table.Lines() {
			text = append(text, l.text)
		}
		s := strings.Join(text, "\n")
		return strings.Count(s, "\n=== ") >= 1 && strings.Contains(s, "INSTALLED"),
			"the table watcher did not append a view with the new SA:\n" + s
	})
	for _, line := range table.Lines() {
		if strings.Contains(line.text, "\x1b[") {
			t.Fatalf("escape codes on a non-terminal: %q", line.text)
		}
	}

	// A deleted SA shows as soon too: with --interval 1h only the events
	// refresh, by asking charon for the one IKE_SA they name.
	start = time.Now()
	if r := l.swanmgr("alice", "terminate", "--rule", "Abczz with Bob"); r.code != 0 {
		t.Fatalf("terminate: %s", r)
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		row, _ := findRow(views[len(views)-1], "Abczz with Bob", 1)
		return row.State == status.StateNotEstablished, fmt.Sprintf("filter 1 is %q after terminate", row.State)
	})
	t.Logf("the deleted SA showed within %v of terminate starting", time.Since(start).Round(time.Millisecond))

	// charon restarts: the watcher says so and comes back by itself.
	n := len(js.Lines())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Host("alice").RestartCharon(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines()[n:])
		for _, v := range views {
			if v.Daemon.Reachable && v.Statistics.EventsReconnects >= 1 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no view from the restarted charon in %d views", len(views))
	})
	views, _ = jsonViews(t, js.Lines()[n:])
	down := 0
	for _, v := range views {
		if !v.Daemon.Reachable {
			down++
		}
	}
	t.Logf("%d views while charon restarted, %d of them \"daemon unavailable\"", len(views), down)
}

// scrapeMetrics reads a Prometheus text page into name{labels} → value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The metrics endpoint (loopback, a free port) serves byte counters that
// grow with traffic, rule_up for every rule and daemon reachability.
func TestStatusMetrics(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	l.mustApply("bob", l.example("alice-bob-eve/bob.toml"))
	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1", "sm-abczz-with-bob-2", "sm-abczz-with-bob-3")

	out := l.startSwanmgr("alice", "metrics", "--listen", "127.0.0.1:0")
	var url string
	eventually(t, 10*time.Second, func() (bool, string) {
		for _, line := range out.Lines() {
			if m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/metrics`).FindString(line.text); m != "" {
				url = m
				return true, ""
			}
		}
		return false, "metrics did not say where it listens"
	})
	bob := l.Host("bob").Addr.String()
	series := func(dir string) string {
		return fmt.Sprintf(`swanmgr_sa_bytes_total{direction=%q,peer=%q,policy="Alice's IPSec",rule="Abczz with Bob"}`, dir, bob)
	}
	before := scrapeMetrics(t, url)
	for name, want := range map[string]float64{
		"swanmgr_daemon_up": 1,
		`swanmgr_rule_up{policy="Alice's IPSec",rule="Abczz with Bob"}`:  1,
		`swanmgr_rule_up{policy="Alice's IPSec",rule="Syslog with Eve"}`: 0,
	} {
		if got, ok := before[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := before[series("in")]; !ok {
		t.Fatalf("no %s in the metrics: %v", series("in"), before)
	}
	l.sendEncrypted("alice", "bob", 6667)
	after := scrapeMetrics(t, url)
	for _, dir := range []string{"in", "out"} {
		if after[series(dir)] <= before[series(dir)] {
			t.Errorf("%s: %v before the traffic, %v after; want it to grow", series(dir), before[series(dir)], after[series(dir)])
		}
	}
	if after[`swanmgr_confidential_bytes_total{direction="out"}`] <= before[`swanmgr_confidential_bytes_total{direction="out"}`] {
		t.Errorf("confidential bytes sent did not grow")
	}
	promtoolCheck(t, url)
}

// promtoolCheck runs Prometheus' own linter, `promtool check metrics`,
// over a live scrape of url. promtool (Debian's prometheus package) is an
// e2e prerequisite: missing, the test fails.
func promtoolCheck(t *testing.T, url string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian package prometheus) is needed to lint the metrics: %v", err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("swanmgr_daemon_up 1")) {
		t.Fatalf("the scrape promtool checks is not of a live charon:\n%s", page)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(page)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// After a charon restart get-conns is empty: every rule, permit and block
// included, is "not loaded" in the table, the JSON, --watch and the
// metrics, never its configured state.
func TestStatusAfterCharonRestart(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Kernel, "alice", "bob")
	bob := l.Host("bob").Addr.String()
	policy := l.writeFile("restart.toml", fmt.Sprintf(`assign = "Server policy"

[endpoint]
name = "Alicepc"
addresses = [%q]

[[filter_list]]
name = "DNS to the server"
  [[filter_list.filter]]
  source = "me"
  destination = %q
  protocol = "udp"
  destination_port = 53

[[filter_list]]
name = "Telnet"
  [[filter_list.filter]]
  source = "any"
  destination = "me"
  protocol = "tcp"
  destination_port = 23

[[filter_action]]
name = "Permit"
action = "permit"

[[filter_action]]
name = "Block"
action = "block"

[[policy]]
name = "Server policy"
  [[policy.rule]]
  name = "DNS"
  filter_list = "DNS to the server"
  filter_action = "Permit"
  [[policy.rule]]
  name = "Telnet"
  filter_list = "Telnet"
  filter_action = "Block"
`, l.Host("alice").Addr.String(), bob), 0o644)
	l.mustApply("alice", policy)
	rules := map[string]string{"DNS": status.StatePermit, "Telnet": status.StateBlock}
	st := l.statusJSON("alice")
	for rule, want := range rules {
		if row, ok := findRow(st, rule, 1); !ok || row.State != want {
			t.Fatalf("before the restart rule %s is %q, want %q", rule, row.State, want)
		}
	}
	js := l.startSwanmgr("alice", "status", "--watch", "--interval", "1h", "-o", "json")
	out := l.startSwanmgr("alice", "metrics", "--listen", "127.0.0.1:0")
	var url string
	eventually(t, 10*time.Second, func() (bool, string) {
		for _, line := range out.Lines() {
			if m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/metrics`).FindString(line.text); m != "" {
				url = m
				return true, ""
			}
		}
		return false, "metrics did not say where it listens"
	})
	ruleUp := func(rule string) string { return fmt.Sprintf(`swanmgr_rule_up{policy="Server policy",rule=%q}`, rule) }
	m := scrapeMetrics(t, url)
	for rule := range rules {
		if m[ruleUp(rule)] != 1 {
			t.Errorf("before the restart %s = %v, want 1", ruleUp(rule), m[ruleUp(rule)])
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Host("alice").RestartCharon(ctx); err != nil {
		t.Fatal(err)
	}
	if conns, err := l.client("alice").Conns(ctx); err != nil || len(conns) != 0 {
		t.Fatalf("the restarted charon: get-conns = %v, %v; want none", conns, err)
	}
	allNotLoaded := func(st *status.Status) (bool, string) {
		if !st.Daemon.Reachable {
			return false, "charon unreachable"
		}
		for rule := range rules {
			if row, ok := findRow(st, rule, 1); !ok || row.State != status.StateNotLoaded {
				return false, fmt.Sprintf("rule %s is %q, want %q", rule, row.State, status.StateNotLoaded)
			}
		}
		return true, ""
	}
	if ok, why := allNotLoaded(l.statusJSON("alice")); !ok {
		t.Errorf("status -o json: %s", why)
	}
	tr := l.swanmgr("alice", "status")
	if tr.code != 0 || strings.Contains(tr.stdout, "pass shunt") || strings.Contains(tr.stdout, "drop shunt") ||
		strings.Count(tr.stdout, "not loaded") < 2 {
		t.Errorf("status after the restart: want both rules not loaded:\n%s", tr)
	}
	eventually(t, 15*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		return allNotLoaded(views[len(views)-1])
	})
	eventually(t, 15*time.Second, func() (bool, string) {
		m := scrapeMetrics(t, url)
		return m["swanmgr_daemon_up"] == 1 && m[ruleUp("DNS")] == 0 && m[ruleUp("Telnet")] == 0,
			fmt.Sprintf("daemon_up %v, DNS %v, Telnet %v", m["swanmgr_daemon_up"], m[ruleUp("DNS")], m[ruleUp("Telnet")])
	})
}

// Figures charon does not keep are counted from its events while
// watching: Main and Quick Modes as SAs come up, and an authentication
// failure (Eve has another key) from charon's log.
func TestStatusWatchCountsEvents(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob", "eve")
	wrong := l.writeFile("alice-bob-eve/wrong.psk", "lab-only: a key Alice does not have 0123456789\n", 0o600)
	eve, err := os.ReadFile(l.example("alice-bob-eve/eve.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l.writeFile("alice-bob-eve/eve-wrong.toml", strings.ReplaceAll(string(eve), `"alice-eve.psk"`, `"`+wrong+`"`), 0o644)
	l.mustApply("bob", l.example("alice-bob-eve/bob.toml"))
	l.mustApply("eve", l.example("alice-bob-eve/eve-wrong.toml"))

	js := l.startSwanmgr("alice", "status", "--watch", "--interval", "1h", "-o", "json")
	eventually(t, 10*time.Second, func() (bool, string) { return len(js.Lines()) > 0, "no first view" })
	// Alice's start actions negotiate both rules as soon as she applies.
	l.mustApply("alice", l.example("alice-bob-eve/alice.toml"))
	var last *status.Status
	eventually(t, 15*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		last = views[len(views)-1]
		s := last.Statistics
		n := func(f status.Figure) uint64 {
			if f.Value == nil {
				return 0
			}
			return *f.Value
		}
		// The counts come from events; the rows from the listing that
		// follows them, which may come a refresh later.
		row, _ := findRow(last, "Syslog with Eve", 1)
		return n(s.AuthenticationFailures) >= 1 && n(s.MainModes) >= 1 && n(s.QuickModes) >= 3 && row.State == status.StateNotEstablished,
			fmt.Sprintf("main modes %v, quick modes %v, authentication failures %v, Eve's rule %q", s.MainModes.Value, s.QuickModes.Value, s.AuthenticationFailures.Value, row.State)
	})
	for _, f := range []status.Figure{last.Statistics.MainModes, last.Statistics.QuickModes, last.Statistics.AuthenticationFailures, last.Statistics.KeyAdditions} {
		if f.Source == nil || *f.Source != status.SourceEvents || f.Since == nil {
			t.Errorf("a figure swanmgr counted does not say so: %+v", f)
		}
	}
	if row, _ := findRow(last, "Syslog with Eve", 1); row.State != status.StateNotEstablished {
		t.Errorf("Eve's rule with the wrong key: %q", row.State)
	}
}

// `status --watch` between changes shows the last view brought to the
// present without asking charon for every SA, as long as the guard saw no
// IPsec traffic; traffic through an SA (libipsec's ESP in UDP, through the
// guard's own counter) shows in its byte counts within a tick or two, not
// only after the 30 s a watch goes without a listing at most.
func TestStatusWatchShowsTrafficAtOnce(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Libipsec, "alice", "bob")
	l.mustApply("bob", l.example("alice-bob/bob.toml"))
	l.mustApply("alice", l.example("alice-bob/alice.toml"))
	l.waitInstalled("alice", "sm-abczz-with-bob-1")
	js := l.startSwanmgr("alice", "status", "--watch", "--interval", "200ms", "-o", "json")
	bytes := func(st *status.Status) (uint64, bool) {
		row, ok := findRow(st, "Abczz with Bob", 1)
		if !ok || row.State != status.StateInstalled || row.BytesIn == nil || row.BytesOut == nil {
			return 0, false
		}
		return *row.BytesIn + *row.BytesOut, true
	}
	var before uint64
	eventually(t, 10*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines())
		if len(views) < 6 {
			return false, fmt.Sprintf("%d views", len(views))
		}
		var ok bool
		before, ok = bytes(views[len(views)-1])
		return ok, "filter 1 not installed in the last view"
	})
	n := len(js.Lines())
	l.sendEncrypted("alice", "bob", 6667)
	sent := time.Now()
	eventually(t, 3*time.Second, func() (bool, string) {
		views, _ := jsonViews(t, js.Lines()[n:])
		for _, v := range views {
			if b, ok := bytes(v); ok && b > before {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no view with more than %d bytes in %d views since the traffic", before, len(views))
	})
	t.Logf("the traffic showed within %v", time.Since(sent).Round(time.Millisecond))
	out, err := l.Host("alice").Command(context.Background(), "nft", "list", "counter", "inet", "swanmgr", "ipsec-traffic").CombinedOutput()
	if err != nil || strings.Contains(string(out), "packets 0 ") {
		t.Errorf("the guard's traffic counter: %v\n%s", err, out)
	}
}
