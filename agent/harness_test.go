package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

// syncBuf is the agent's log, read while the agent writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is the backoff's clock, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeFirewall stands in for nftables: tests against a fake charon must
// not touch the firewall of the machine they run on.
type fakeFirewall struct {
	mu   sync.Mutex
	live *guard.Ruleset
}

func (f *fakeFirewall) Fingerprint(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live.Hash(), nil
}

func (f *fakeFirewall) Install(_ context.Context, _, next *guard.Ruleset) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := f.live.Hash() != next.Hash()
	f.live = next
	return changed, nil
}

// harness is one agent against a fake charon, with ticks sent by the test.
type harness struct {
	t       *testing.T
	srv     *vicitest.Server
	dir     string
	policy  string
	log     *syncBuf
	ticks   chan time.Time
	reload  chan struct{}
	clock   *fakeClock
	done    chan error
	cancel  context.CancelFunc
	agent   *Agent
	state   string
	fw      *fakeFirewall
	stopped bool // the test took Run's result from done
	full    time.Duration
	settle  time.Duration
}

const alicePolicy = `assign = "Alice's IPSec"
[endpoint]
name = "Alicepc"
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Abczz to Bob's PC"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6667

[[filter_action]]
name = "Encrypt Abczz"
action = "negotiate"
security = "high"
pfs = true

[[policy]]
name = "Alice's IPSec"
  [[policy.rule]]
  name = "Abczz with Bob"
  filter_list = "Abczz to Bob's PC"
  filter_action = "Encrypt Abczz"
  authentication = [ { method = "psk", secret_file = "alice-bob.psk" } ]
`

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, srv: vicitest.NewServer(t), dir: dir, policy: filepath.Join(dir, "alice.toml"), log: &syncBuf{},
		ticks: make(chan time.Time), reload: make(chan struct{}), clock: &fakeClock{t: time.Unix(1e9, 0)}, state: filepath.Join(dir, "state"), fw: &fakeFirewall{}}
	h.write("alice-bob.psk", "lab-only: a key for Alice and Bob 0123456789\n", 0o600)
	h.write("alice.toml", alicePolicy, 0o644)
	return h
}

func (h *harness) write(name, content string, mode os.FileMode) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), mode); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) config() Config {
	store := assign.Store{Dir: h.state}
	sock := h.srv.Socket()
	return Config{
		PolicyFile: h.policy, Backend: render.LibIPsec, Socket: sock, Store: store, Log: h.log,
		Ticks: h.ticks, Reload: h.reload, Now: h.clock.Now, FullCheckInterval: h.full, Settle: h.settle,
		DialMin: 5 * time.Millisecond, DialMax: 20 * time.Millisecond,
		InitiateMin: 2 * time.Second, InitiateMax: 8 * time.Second, NegotiationTimeout: time.Second,
		Dial: func(ctx context.Context) (*Conn, error) {
			c, err := vici.Dial(ctx, sock)
			if err != nil {
				return nil, err
			}
			return &Conn{Client: c, Backend: render.LibIPsec, Engine: &assign.Engine{Daemon: assign.ViciDaemon{Client: c}, Store: store, Socket: sock,
				Firewall: func() (assign.Firewall, error) { return h.fw, nil }}}, nil
		},
	}
}

// start runs the agent until the test ends.
func (h *harness) start() {
	h.t.Helper()
	a, err := New(h.config())
	if err != nil {
		h.t.Fatal(err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if h.stopped {
			return
		}
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			h.t.Error("the agent did not stop within 5 s of its context ending")
		}
	})
}

// tick wakes the agent for one check; it returns once the agent took it.
func (h *harness) tick() {
	h.t.Helper()
	select {
	case h.ticks <- time.Now():
	case err := <-h.done:
		h.t.Fatalf("the agent stopped: %v\n%s", err, h.log)
	case <-time.After(5 * time.Second):
		h.t.Fatalf("the agent took no tick within 5 s\n%s", h.log)
	}
}

// eventually polls cond (with a tick each round) until it holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("after 5 s: %s\nagent log:\n%s", what, h.log)
		}
		select {
		case h.ticks <- time.Now():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *harness) logHas(s string) func() bool {
	return func() bool { return strings.Contains(h.log.String(), s) }
}

// client is a second VICI client, the stray operator.
func (h *harness) client() *vici.Client {
	h.t.Helper()
	c, err := vici.Dial(context.Background(), h.srv.Socket())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

const aliceConn = "sm-abczz-with-bob"
