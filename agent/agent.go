package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// Conn is one connection to charon and the engine working on it.
type Conn struct {
	Engine *assign.Engine
	Client *vici.Client
	// Backend is the IPsec backend charon runs (from its plugins); ""
	// means Config.Backend.
	Backend render.Backend
}

// Close closes the connection's client and what its engine opened (the
// guard table's namespace).
func (c *Conn) Close() {
	if c.Engine != nil {
		c.Engine.Close()
	}
	c.Client.Close()
}

// Defaults of Config's durations.
const (
	DefaultCheckInterval      = time.Second
	DefaultDialMin            = 50 * time.Millisecond
	DefaultDialMax            = 250 * time.Millisecond
	DefaultInitiateMin        = 2 * time.Second
	DefaultInitiateMax        = 2 * time.Minute
	DefaultNegotiationTimeout = 20 * time.Second
	// DefaultApplyTimeout bounds one converge (an apply of the whole policy
	// after a restart included).
	DefaultApplyTimeout = 2 * time.Minute
	DefaultSettle       = 300 * time.Millisecond
	// DefaultFullCheckInterval is how often a check goes all the way
	// (Engine.Plan: the record against charon's connections, secrets and
	// copies of them, and the guard's table) although the cheap check found
	// nothing.
	DefaultFullCheckInterval = 3 * time.Second
	// saRecheck is how often the SAs of start rules are listed although no
	// SA event said one went down.
	saRecheck = 10 * time.Second
)

// Config is what an Agent works with. PolicyFile, Socket, Store, Dial and
// Log are required.
type Config struct {
	PolicyFile string
	// Backend renders the policy until charon tells its own (Conn.Backend);
	// "" means kernel.
	Backend  render.Backend
	Validate model.ValidateOptions
	// Socket names the charon (messages, the agent lock).
	Socket string
	// Store holds the agent lock (the engines have their own Store).
	Store assign.Store
	// Dial connects to charon and builds the engine; called again after
	// charon went away.
	Dial func(ctx context.Context) (*Conn, error)
	// Log receives one line per event.
	Log io.Writer
	// Hold, when set, is asked before each converge; a reason means the
	// agent does not assign its file this time (a change made with
	// --confirm is pending, or the policy file is the change that was
	// reverted for not being confirmed) and only keeps charon at the
	// current assignment (the engine's snapshot). It may act itself
	// (revert a change whose deadline passed with no watchdog left): the
	// agent then owns the timer.
	Hold func(ctx context.Context) string
	// Held, when set, is Hold's check without its actions, made again
	// under the apply lock (as the engine's Precondition) before each apply
	// of the policy file: a change made with --confirm after Hold was asked
	// stops the apply, which would otherwise assign the file over it. It
	// must neither take the lock nor change anything.
	Held func() string

	// CheckInterval is the period of the cheap check (get-conns,
	// get-shared, the files' fingerprints); DefaultCheckInterval if 0.
	CheckInterval time.Duration
	// FullCheckInterval is the period of the full check (Engine.Plan of
	// the last good policy: connections, secrets, charon's copies of them,
	// the guard); DefaultFullCheckInterval if 0.
	FullCheckInterval time.Duration
	// Ticks, if set, replaces the check ticker (tests).
	Ticks <-chan time.Time
	// Reload wakes the agent to re-read the policy now (SIGHUP).
	Reload <-chan struct{}
	// Now is the clock of the per-rule backoff (tests); nil = time.Now.
	Now func() time.Time

	// DialMin and DialMax bound the backoff between dials of an
	// unreachable socket.
	DialMin, DialMax time.Duration
	// InitiateMin and InitiateMax bound the backoff between initiates of
	// a rule's child that should be up and is not.
	InitiateMin, InitiateMax time.Duration
	// NegotiationTimeout is how long charon may try one initiate.
	NegotiationTimeout time.Duration
	// ApplyTimeout bounds one converge.
	ApplyTimeout time.Duration
	// Settle is how long the files must have been unmodified before a
	// change is read (a file written in place may be read half-way);
	// DefaultSettle if 0.
	Settle time.Duration
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CheckInterval, DefaultCheckInterval)
	def(&c.FullCheckInterval, DefaultFullCheckInterval)
	def(&c.DialMin, DefaultDialMin)
	def(&c.DialMax, DefaultDialMax)
	def(&c.InitiateMin, DefaultInitiateMin)
	def(&c.InitiateMax, DefaultInitiateMax)
	def(&c.NegotiationTimeout, DefaultNegotiationTimeout)
	def(&c.ApplyTimeout, DefaultApplyTimeout)
	def(&c.Settle, DefaultSettle)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Agent keeps one charon converged with one policy file. Build it with New.
type Agent struct {
	cfg Config
	// backend is what the policy is rendered for: charon's, once known.
	backend render.Backend

	logMu sync.Mutex

	files  watcher
	good   *policy // the last policy that validated (and was assigned)
	goodFP string  // the files' fingerprint good was read at
	badFP  string  // fingerprint of files that did not validate
	// refused are the files the last refused read was made of or named
	// (a folder's files then, its key and certificate files): one that
	// changes or appears (a file added with a mistake and fixed in place,
	// the key file of a peer written after its rule) is a reason to read
	// the policy again. nil once a policy validates.
	refused []string
	// parses counts the policy reads (for the tests: a read that never
	// settles would repeat at every check).
	parses atomic.Int64
	// reuse holds the decoded files of the last read of a policy folder.
	reuse   *model.Reuse
	lastErr string // the last converge error logged, not repeated
	// failures counts converges failed in a row; until retryAt, with the
	// files as they were (failFP), the next waits (waitingAfterFailure).
	failures int
	retryAt  time.Time
	failFP   string
	hold     string // why the agent holds off, "" when it does not
	// held is the current assignment kept while holding off (read from
	// the engine's snapshot), heldNote the last word on it, not repeated.
	held     *heldPolicy
	heldNote string
	// keeping is the snapshot being assigned again while holding off (its
	// Precondition checks it is still the current one); nil when the
	// agent assigns its file.
	keeping *assign.Snapshot
	// mark is the snapshot an apply of the policy file may replace, from
	// the Precondition to Afterward.
	mark *assign.SnapshotMark
	// lastFull is when the last full check ran, lastDrift the last that
	// compared charon's copies; lastSAs when start rules' SAs were last
	// listed.
	lastFull, lastDrift, lastSAs time.Time
	// saWake: an SA event or an apply calls for listing SAs now.
	saWake bool

	rules    map[string]*ruleState // by connection, for rules that should be up
	initDone chan initResult
	gen      int // connection generation; results of older ones are dropped
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.PolicyFile == "" || cfg.Socket == "" || cfg.Dial == nil || cfg.Log == nil {
		return nil, errors.New("agent: PolicyFile, Socket, Dial and Log are required")
	}
	cfg.defaults()
	b := cfg.Backend
	if b == "" {
		b = render.Kernel
	}
	return &Agent{cfg: cfg, backend: b, rules: map[string]*ruleState{}, initDone: make(chan initResult, 16)}, nil
}

// logf writes one event line.
func (a *Agent) logf(format string, args ...any) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	msg := fmt.Sprintf(format, args...)
	// One event, one line: journald and grep see it whole.
	msg = strings.ReplaceAll(msg, "\n", "; ")
	fmt.Fprintln(a.cfg.Log, msg)
}

// Run validates the policy, takes the agent lock, and keeps charon
// converged until ctx ends; then it returns nil, leaving the assignment in
// place. A policy that does not validate at start, or an agent already
// running for the socket, is an error.
func (a *Agent) Run(ctx context.Context) error {
	p, err := a.read()
	if err != nil {
		return err
	}
	unlock, err := a.cfg.Store.AgentLock(a.cfg.Socket)
	if err != nil {
		return err
	}
	defer unlock()
	backend := "the backend charon runs"
	if a.cfg.Backend != "" {
		backend = string(a.cfg.Backend) + " backend"
	}
	a.logf("agent started: policy %q from %s (%d %s, %s) for charon at %s, checking every %v",
		p.result.Policy, a.cfg.PolicyFile, p.rules, plural(p.rules, "rule", "rules"), backend, a.cfg.Socket, a.cfg.CheckInterval)
	for _, w := range p.warnings {
		a.logf("warning: %s", w)
	}

	ticks := a.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(a.cfg.CheckInterval)
		defer t.Stop()
		ticks = t.C
	}
	var conn *Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		if conn == nil {
			var err error
			if conn, err = a.connect(ctx); err != nil {
				return err
			} else if conn == nil {
				a.logf("agent stopping: the assignment stays in place")
				return nil
			}
		}
		a.useBackend(conn)
		a.checkUnderLock(conn)
		gone := a.serve(ctx, conn, ticks)
		if !gone {
			a.logf("agent stopping: the assignment stays in place")
			return nil
		}
		conn.Close()
		conn = nil
		a.gen++
	}
}

// fatalError is a Dial error that waiting does not heal.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// Fatal marks an error of Config.Dial as one that waiting does not heal
// (a configuration that contradicts charon): Run returns it instead of
// dialing again.
func Fatal(err error) error { return &fatalError{err} }

// connect dials charon until it answers (nil when ctx ends first).
func (a *Agent) connect(ctx context.Context) (*Conn, error) {
	wait := a.cfg.DialMin
	var since time.Time
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := a.cfg.Dial(dctx)
		cancel()
		if err == nil {
			if !since.IsZero() {
				a.logf("charon at %s answers again (waited %v): converging", a.cfg.Socket, time.Since(since).Round(time.Millisecond))
			}
			return conn, nil
		}
		var fe *fatalError
		if errors.As(err, &fe) {
			return nil, fe.err
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if since.IsZero() {
			since = time.Now()
			a.logf("waiting for charon at %s: %v (trying again until it answers)", a.cfg.Socket, err)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, a.cfg.DialMax)
	}
}

// useBackend renders the policy for the backend the connected charon
// runs, if that is not the one it was rendered for.
func (a *Agent) useBackend(conn *Conn) {
	if conn.Backend == "" || conn.Backend == a.backend {
		return
	}
	a.logf("charon at %s runs the %s backend: rendering the policy for it", a.cfg.Socket, conn.Backend)
	a.backend = conn.Backend
	if a.good == nil {
		return
	}
	if p, err := a.parse(a.good.in.Policy); err == nil {
		a.good = p
	} else {
		a.logf("the last good policy does not render for the %s backend: %v", a.backend, err)
		a.good, a.goodFP = nil, ""
	}
}

// watching is the subscription to charon's SA events: they wake the loop,
// and the stream's closing tells that charon went away. It is made in the
// background (a busy charon may take its time to confirm it); until it is
// there, and without it, the periodic check still finds everything, only
// later.
type watching struct {
	events <-chan vici.Event
	ready  chan watched
	stop   func()
}

type watched struct {
	events <-chan vici.Event
	stop   func()
}

// subscribe starts the subscription in the background.
func (a *Agent) subscribe(ctx context.Context, conn *Conn) *watching {
	w := &watching{ready: make(chan watched, 1), stop: func() {}}
	go func() {
		wctx, cancel := context.WithCancel(ctx)
		ev, err := conn.Client.Watch(wctx, "ike-updown", "child-updown")
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				a.logf("not watching charon's SA events (%v): the check every %v still repairs", err, a.cfg.CheckInterval)
			}
			return
		}
		w.ready <- watched{ev, cancel}
	}()
	return w
}

// serve converges and waits for the next reason to, until charon goes
// away (true) or ctx ends (false).
func (a *Agent) serve(ctx context.Context, conn *Conn, ticks <-chan time.Time) bool {
	force := true // a fresh connection: charon may have restarted
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var w *watching
	defer func() {
		if w != nil {
			w.stop()
		}
	}()
	for {
		if a.waitingAfterFailure(force) {
			// A converge that keeps failing (charon refusing a rule, a
			// name someone else loaded) is tried again less and less
			// often, not at every check: at thousands of rules each try
			// costs a whole apply.
		} else if err := a.converge(ctx, conn, force); err != nil {
			if ctx.Err() != nil {
				return false
			}
			if errors.Is(err, vici.ErrUnreachable) || errors.Is(err, vici.ErrDisconnected) || errors.Is(err, vici.ErrClosed) {
				a.logf("lost charon at %s: %v", a.cfg.Socket, err)
				return true
			}
			wait := a.convergeFailed()
			if msg := err.Error(); msg != a.lastErr {
				a.lastErr = msg
				a.logf("converging failed: %v (trying again in %v, or at once when the policy files change; again after %d failures in a row: up to every %v)", err, wait, a.failures, maxConvergeBackoff)
			}
		} else {
			a.lastErr, a.failures = "", 0
			if a.saWake || force || time.Since(a.lastSAs) >= saRecheck || a.backingOff() {
				a.saWake = false
				a.lastSAs = time.Now()
				a.keepUp(ctx, conn)
			}
		}
		if w == nil {
			// After the first converge: after a restart the policy goes
			// back first, whatever the subscription waits for.
			w = a.subscribe(sctx, conn)
		}
		force = false
		if !a.wait(ctx, w, ticks, &force) {
			return ctx.Err() == nil
		}
	}
}

// maxConvergeBackoff bounds the wait between converges that fail.
const maxConvergeBackoff = 30 * time.Second

// convergeFailed counts a failed converge and returns the wait before the
// next: the check interval, doubling with each failure in a row.
func (a *Agent) convergeFailed() time.Duration {
	a.failures++
	wait := backoff(a.failures, a.cfg.CheckInterval, maxConvergeBackoff)
	a.retryAt = a.cfg.Now().Add(wait)
	a.failFP = a.files.fingerprint(a.watched())
	return wait
}

// waitingAfterFailure says whether the converge after a failure waits still: not
// when forced (SIGHUP), nor once the policy files changed.
func (a *Agent) waitingAfterFailure(force bool) bool {
	return a.failures > 0 && !force && a.cfg.Now().Before(a.retryAt) && a.files.fingerprint(a.watched()) == a.failFP
}

// wait blocks until something calls for a check: the ticker, a reload, an
// SA of the policy going down. It returns false when ctx ends or charon
// went away (its event stream closed); a finished initiate and the
// subscription coming up are handled on the way.
func (a *Agent) wait(ctx context.Context, w *watching, ticks <-chan time.Time, force *bool) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ticks:
			return true
		case <-a.cfg.Reload:
			a.logf("reload requested: re-reading %s", a.cfg.PolicyFile)
			a.badFP, *force = "", true
			return true
		case r := <-a.initDone:
			a.initiated(r)
		case r := <-w.ready:
			w.events, w.stop = r.events, r.stop
		case ev, ok := <-w.events:
			if !ok {
				a.logf("charon at %s went away (its event stream closed): waiting for it to come back", a.cfg.Socket)
				return false
			}
			if a.relevant(ev) {
				a.saWake = true
				return true
			}
		}
	}
}

// relevant reports whether an SA event concerns a connection of the
// assigned policy going down (a reason to check its rules now).
func (a *Agent) relevant(ev vici.Event) bool {
	if ev.Up() || a.good == nil {
		return false
	}
	sas, err := ev.IKESAs()
	if err != nil {
		return true
	}
	for _, sa := range sas {
		if a.good.conn(sa.Name) != nil {
			if !a.quiet(sa.Name) {
				var kids []string
				for _, ch := range sa.Children {
					kids = append(kids, ch.Name)
				}
				a.logf("%s of %s went down (%s event): checking", describeSA(sa), a.rulesOf(sa.Name, kids), ev.Name)
			}
			return true
		}
	}
	return false
}

func describeSA(sa vici.IKESA) string {
	if len(sa.Children) == 1 {
		return fmt.Sprintf("CHILD_SA %s #%d", sa.Children[0].Name, sa.Children[0].UniqueID)
	}
	return fmt.Sprintf("IKE_SA %s #%d", sa.Name, sa.UniqueID)
}
