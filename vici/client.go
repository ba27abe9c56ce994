package vici

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// DefaultSocket is charon's VICI socket when none is given.
const DefaultSocket = "/var/run/charon.vici"

// DefaultCommandTimeout bounds a command whose context has no deadline.
// govici gives up on a session whose daemon stays silent for 5 s past the
// context deadline (or 5 s without one) and the session is then dead; with a
// deadline always set, a slow charon ends the command with a timeout error
// instead, and the Client dials a fresh session for the next command.
const DefaultCommandTimeout = 30 * time.Second

// Client talks to one charon over its VICI socket. Its methods may be called
// from several goroutines. Plain commands share one session and run one at a
// time (charon serializes configuration changes anyway); commands that
// stream events (ListSAs, ListConns, Initiate, Terminate) and Watch use a
// session of their own, so their events cannot mix with anything else.
//
// A session that broke (charon restarted) is noticed and replaced before
// the next command. A command that fails because its session broke while it
// ran returns an error matching ErrDisconnected, except read-only commands,
// which are retried once on a fresh session.
type Client struct {
	socket   string
	timeout  time.Duration
	observer func(cmd string)

	// cmdMu serializes commands on the shared session.
	cmdMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	sess      *session   // shared session; nil until needed again
	dedicated map[*session]struct{}
	closed    bool
	counts    map[string]int

	// subscribeTimeout bounds a subscription (0: DefaultSubscribeTimeout);
	// abandoned counts the sessions whose subscription never completed.
	subscribeTimeout time.Duration
	abandoned        int
}

// Option configures a Client.
type Option func(*Client)

// WithObserver calls f with the command's name ("load-conn", "list-sas", ...)
// each time the Client is about to send a command, before it is sent. f
// runs on the caller's goroutine and must not call back into the Client.
func WithObserver(f func(cmd string)) Option {
	return func(c *Client) { c.observer = f }
}

// WithCommandTimeout sets the deadline given to commands whose context has
// none (DefaultCommandTimeout otherwise). Initiate and Terminate derive
// theirs from their request's Timeout instead.
func WithCommandTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithSubscribeTimeout bounds the wait for charon to confirm a subscription
// (Watch, and the event registration of streamed commands);
// DefaultSubscribeTimeout otherwise.
func WithSubscribeTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.subscribeTimeout = d
		}
	}
}

// Dial connects to charon's VICI socket. socket is a path or unix://path;
// "" means DefaultSocket. A missing or refusing socket returns an error that
// reads `cannot reach charon at /path: is it running? (<cause>)` and matches
// ErrUnreachable.
func Dial(ctx context.Context, socket string, opts ...Option) (*Client, error) {
	path, err := socketPath(socket)
	if err != nil {
		return nil, err
	}
	c := &Client{
		socket:    path,
		timeout:   DefaultCommandTimeout,
		dedicated: map[*session]struct{}{},
		counts:    map[string]int{},
	}
	for _, o := range opts {
		o(c)
	}
	ctx, cancel, _ := c.withDeadline(ctx)
	defer cancel()
	s, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.sess = s
	return c, nil
}

func socketPath(socket string) (string, error) {
	switch {
	case socket == "":
		return DefaultSocket, nil
	case strings.HasPrefix(socket, "unix://"):
		p := strings.TrimPrefix(socket, "unix://")
		if p == "" {
			return "", fmt.Errorf("vici: socket %q has no path", socket)
		}
		return p, nil
	case strings.Contains(socket, "://"):
		return "", fmt.Errorf("vici: socket %q: only unix sockets are supported (a path or unix://path)", socket)
	}
	return socket, nil
}

// Socket is the path of the VICI socket the Client talks to.
func (c *Client) Socket() string { return c.socket }

// Close closes every session of the Client, including those of running
// ListSAs, Initiate and Watch calls (their channels close). Commands after
// Close fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.sess != nil {
		c.sess.close()
		c.sess = nil
	}
	for s := range c.dedicated {
		s.close()
	}
	clear(c.dedicated)
	return nil
}

// Counts returns how many times each command was issued through this Client
// (attempts, whether they succeeded or not): "load-conn" → 3. A command that
// was never issued is absent (its count reads 0).
func (c *Client) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

func (c *Client) note(cmd string) {
	c.mu.Lock()
	c.counts[cmd]++
	c.mu.Unlock()
	if c.observer != nil {
		c.observer(cmd)
	}
}

// session is one govici session plus a way to tell it died: govici closes
// every channel given to NotifyEvents when its reader stops (EOF, read error,
// Close), so a channel that never receives events works as a death notice.
type session struct {
	gs   *govici.Session
	bc   *boundedConn // its connection (nil if never dialed)
	dead chan govici.Event
	once sync.Once
}

// failed is err with the connection's refused packet length, if any.
func (s *session) failed(err error) error { return withBadLength(s.bc, err) }

func (s *session) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

func (s *session) close() {
	s.once.Do(func() { s.gs.Close() })
}

// withDeadline gives ctx the Client's command timeout when it has no
// deadline, and reports the timeout it added (0 if none).
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc, time.Duration) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, 0
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	return ctx, cancel, c.timeout
}

// dial opens a session. charon's listen backlog is small: several clients
// connecting at once get EAGAIN, which is retried until ctx ends.
func (c *Client) dial(ctx context.Context) (*session, error) {
	var d net.Dialer
	var bc *boundedConn
	dialer := func(_ context.Context, network, addr string) (net.Conn, error) {
		backoff := 5 * time.Millisecond
		for {
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				bc = newBoundedConn(conn, maxPacket)
				return bc, nil
			}
			if !errors.Is(err, syscall.EAGAIN) {
				return conn, err
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, err
			case <-t.C:
			}
			backoff = min(2*backoff, 200*time.Millisecond)
		}
	}
	gs, err := govici.NewSession(govici.WithSocketPath(c.socket), govici.WithDialContext(dialer))
	if err != nil {
		return nil, &unreachableError{socket: c.socket, cause: dialCause(err)}
	}
	s := &session{gs: gs, bc: bc, dead: make(chan govici.Event)}
	gs.NotifyEvents(s.dead)
	return s, nil
}

// sharedSession returns the shared session, dialing a new one if there is
// none or it died. fresh reports a newly dialed session. Call with cmdMu held.
func (c *Client) sharedSession(ctx context.Context) (s *session, fresh bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	s = c.sess
	if s != nil && !s.alive() {
		s.close()
		s, c.sess = nil, nil
	}
	c.mu.Unlock()
	if s != nil {
		return s, false, nil
	}
	s, err = c.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.close()
		return nil, false, ErrClosed
	}
	c.sess = s
	return s, true, nil
}

// dropShared forgets s as the shared session (if it still is) and closes it.
func (c *Client) dropShared(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	s.close()
}

// isCmdUnknown tells govici's error for a CMD_UNKNOWN answer. govici's
// sentinel is unexported; its text names the packet type (2).
func isCmdUnknown(err error) bool {
	return strings.Contains(err.Error(), "unexpected response type: 2")
}

// call runs cmd on the shared session. readOnly commands are retried once
// when a session that looked alive turns out broken: they have no effect
// that a repeat could double.
func (c *Client) call(ctx context.Context, cmd, name string, req *govici.Message, readOnly bool) (*govici.Message, error) {
	prefix := cmdPrefix(cmd, name)
	if err := checkSize(cmd, req); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	ctx, cancel, added := c.withDeadline(ctx)
	defer cancel()
	c.note(cmd)

	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	for attempt := 0; ; attempt++ {
		s, fresh, err := c.sharedSession(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		resp, err := s.gs.Call(ctx, cmd, req)
		if err == nil {
			return resp, nil
		}
		err = s.failed(err)
		if resp != nil {
			return nil, commandError(cmd, name, resp)
		}
		if isCmdUnknown(err) {
			return nil, &CommandError{Command: cmd, Name: name, Message: "unknown command", Err: ErrUnsupported}
		}
		// The session may be mid-packet or hold a late answer: never reuse it.
		c.dropShared(s)
		if e := asNotVICI(prefix, c.socket, err); e != nil {
			return nil, e
		}
		if ctx.Err() != nil {
			return nil, &timeoutError{prefix: prefix, socket: c.socket, after: added, cause: ctx.Err()}
		}
		if c.isClosed() {
			return nil, fmt.Errorf("%s: %w", prefix, ErrClosed)
		}
		if readOnly && !fresh && attempt == 0 {
			continue
		}
		return nil, &disconnectedError{prefix: prefix, socket: c.socket, cause: err}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func commandError(cmd, name string, resp *govici.Message) *CommandError {
	msg, _ := resp.Get("errmsg").(string)
	if msg == "" {
		msg = "command failed without a message"
	}
	return &CommandError{Command: cmd, Name: name, Message: msg}
}

// streamBuffer is the channel buffer between govici's reader and our pump.
// govici drops an event when the channel is full; the pump empties it
// continuously, so the buffer only has to cover scheduling delays.
const streamBuffer = 1 << 14

// DefaultSubscribeTimeout bounds the wait for charon to confirm a
// subscription: charon confirms at once, so a subscription that takes
// longer is stuck (see openDedicated).
const DefaultSubscribeTimeout = 5 * time.Second

// ErrSubscribeHung is matched by the error of a subscription charon did
// not confirm in time (see openDedicated); subscribing again is the
// remedy.
var ErrSubscribeHung = errors.New("subscribing to charon's events did not complete")

// abandonGrace is how long a closed session's Subscribe gets to return
// before it counts as abandoned.
const abandonGrace = 100 * time.Millisecond

// openDedicated dials a session of its own, registers it for Close, routes
// events into a buffered channel and subscribes to events.
//
// govici v0.8.1's Subscribe takes no context and can wait forever: it
// holds a lock its reader needs to deliver an event, so an event that
// arrives between a registration and its confirmation stalls the session
// for good, and closing the connection wakes neither. So the wait has a
// deadline of its own (the subscribe timeout, or ctx's if sooner); when
// it passes, the session is closed and released, and if its Subscribe
// still does not return it is counted (AbandonedSubscriptions): its two
// govici goroutines stay behind, nothing of the Client's waits on them.
func (c *Client) openDedicated(ctx context.Context, buffer int, events ...string) (*session, chan govici.Event, error) {
	if c.isClosed() {
		return nil, nil, ErrClosed
	}
	s, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.close()
		return nil, nil, ErrClosed
	}
	c.dedicated[s] = struct{}{}
	wait := c.subscribeTimeout
	c.mu.Unlock()
	if wait <= 0 {
		wait = DefaultSubscribeTimeout
	}

	ch := make(chan govici.Event, buffer)
	s.gs.NotifyEvents(ch)
	errc := make(chan error, 1)
	go func() { errc <- s.gs.Subscribe(events...) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err = <-errc:
		if err == nil {
			return s, ch, nil
		}
		c.release(s)
		return nil, nil, s.failed(err)
	case <-t.C:
		err = fmt.Errorf("charon did not confirm within %s: %w", wait, ErrSubscribeHung)
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.release(s)
	g := time.NewTimer(abandonGrace)
	defer g.Stop()
	select {
	case <-errc:
	case <-g.C:
		c.mu.Lock()
		c.abandoned++
		c.mu.Unlock()
	}
	return nil, nil, err
}

// AbandonedSubscriptions returns how many sessions this Client gave up
// because their subscription never completed (see openDedicated).
func (c *Client) AbandonedSubscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abandoned
}

func (c *Client) release(s *session) {
	c.mu.Lock()
	delete(c.dedicated, s)
	c.mu.Unlock()
	s.close()
}

// stream runs a command on a session of its own while collecting the events
// named event, the reliable way: subscribe first, then Call. charon sends a
// command's streamed events before its response and govici's reader hands
// each event to the channel before it reads the response, so when Call
// returns every event is queued. Closing the session then closes the
// channel behind the last event. each is called for every event, in order,
// on one goroutine, and all calls finish before stream returns.
func (c *Client) stream(ctx context.Context, cmd, name, event string, req *govici.Message, buffer int, added time.Duration, each func(*govici.Message)) (*govici.Message, error) {
	prefix := cmdPrefix(cmd, name)
	if err := checkSize(cmd, req); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	c.note(cmd)
	s, ch, err := c.openDedicated(ctx, buffer, event)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &timeoutError{prefix: prefix, socket: c.socket, after: added, cause: ctx.Err()}
		}
		if e := asNotVICI(prefix, c.socket, err); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for ev := range pump(context.Background(), ch) {
			if ev.Name == event {
				each(ev.Message)
			}
		}
	}()
	resp, err := s.gs.Call(ctx, cmd, req)
	c.release(s)
	<-consumed
	err = s.failed(err)

	switch {
	case err == nil:
		return resp, nil
	case resp != nil:
		return nil, commandError(cmd, name, resp)
	case isCmdUnknown(err):
		return nil, &CommandError{Command: cmd, Name: name, Message: "unknown command", Err: ErrUnsupported}
	case asNotVICI(prefix, c.socket, err) != nil:
		return nil, asNotVICI(prefix, c.socket, err)
	case ctx.Err() != nil:
		return nil, &timeoutError{prefix: prefix, socket: c.socket, after: added, cause: ctx.Err()}
	case c.isClosed():
		return nil, fmt.Errorf("%s: %w", prefix, ErrClosed)
	}
	return nil, &disconnectedError{prefix: prefix, socket: c.socket, cause: err}
}

// testHookQueued, when set by a test before the pump starts, runs after
// each value the pump took off its input.
var testHookQueued func()

// pump forwards everything from in to the returned channel and never blocks
// on in: values wait in memory while the reader of the result is slow. The
// result closes after in closes and the queue is empty, or when ctx ends.
func pump[T any](ctx context.Context, in <-chan T) <-chan T {
	out := make(chan T)
	go func() {
		defer close(out)
		var q []T
		for in != nil || len(q) > 0 {
			var send chan<- T
			var next T
			if len(q) > 0 {
				send, next = out, q[0]
			}
			select {
			case v, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				q = append(q, v)
				if testHookQueued != nil {
					testHookQueued()
				}
			case send <- next:
				var zero T
				q[0] = zero
				q = q[1:]
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
