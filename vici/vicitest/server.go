package vicitest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	govici "github.com/strongswan/govici/vici"
)

// Handler answers one command request. The returned message is the
// response; nil means an empty response. Handlers run on the connection's
// goroutine: one request at a time per client, as in charon.
type Handler func(r *Request) *govici.Message

// Request is a command request being handled.
type Request struct {
	Command string
	Message *govici.Message // the request's arguments, never nil
	c       *conn
}

// Event sends an event to the client that issued the request, if that client
// registered for it (charon drops streamed events otherwise). It reports
// whether the event was written.
func (r *Request) Event(name string, m *govici.Message) bool {
	return r.c.event(name, m)
}

// Gone is closed when the requesting client disconnects or the server closes.
// Handlers that block (a slow initiate) should select on it.
func (r *Request) Gone() <-chan struct{} { return r.c.gone }

// KnownEvents are the event names a client may register for; registering
// any other name is answered with EVENT_UNKNOWN.
var KnownEvents = []string{
	"log", "control-log", "list-sa", "list-policy", "list-conn", "list-cert",
	"list-authority", "ike-updown", "ike-rekey", "ike-update", "child-updown",
	"child-rekey",
}

// Server is a fake charon listening on a unix socket.
type Server struct {
	tb   testing.TB
	dir  string
	path string
	ln   net.Listener

	mu       sync.Mutex
	handlers map[string]Handler
	conns    map[*conn]struct{}
	log      []Received
	closed   bool
	state    state
	// early: events to send a client that registers for them before the
	// confirmation (EmitBeforeConfirm), by event name.
	early map[string][]*govici.Message

	wg sync.WaitGroup
}

// Received is one command request as the server got it.
type Received struct {
	Command string
	Message *govici.Message
}

// NewServer starts a fake charon on a fresh unix socket. It is closed
// when the test ends.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	// A short path: unix socket paths are limited to 108 bytes, and
	// t.TempDir() under a long test name can exceed that.
	dir, err := os.MkdirTemp("", "vicitest")
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "charon.vici")
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	s := &Server{
		tb:       tb,
		dir:      dir,
		path:     path,
		ln:       ln,
		handlers: map[string]Handler{},
		conns:    map[*conn]struct{}{},
		state:    newState(),
	}
	s.installDefaults()
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(s.Close)
	return s
}

// Socket is the path of the server's unix socket.
func (s *Server) Socket() string { return s.path }

// Handle installs h for cmd, replacing the default behaviour. A nil h
// removes the command: requests for it are answered with CMD_UNKNOWN.
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.handlers, cmd)
		return
	}
	s.handlers[cmd] = h
}

// Received returns every command request received so far, in order.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// Commands returns the names of the commands received so far, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.log))
	for i, r := range s.log {
		out[i] = r.Command
	}
	return out
}

// Count returns how many cmd requests were received.
func (s *Server) Count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.log {
		if r.Command == cmd {
			n++
		}
	}
	return n
}

// Emit sends an event to every client registered for it, as charon does
// with ike-updown and friends, and returns how many clients got it.
func (s *Server) Emit(name string, m *govici.Message) int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.event(name, m) {
			n++
		}
	}
	return n
}

// EmitBeforeConfirm makes the next registration for event (by any client)
// receive m as that event between the registration and its confirmation,
// as charon does when the event is raised in that instant. Each call arms
// one registration.
func (s *Server) EmitBeforeConfirm(event string, m *govici.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.early == nil {
		s.early = map[string][]*govici.Message{}
	}
	if m == nil {
		m = govici.NewMessage()
	}
	s.early[event] = append(s.early[event], m)
}

// takeEarly returns the event armed for a registration for event, or nil.
func (s *Server) takeEarly(event string) *govici.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.early[event]
	if len(q) == 0 {
		return nil
	}
	s.early[event] = q[1:]
	return q[0]
}

// Subscribers returns how many connected clients are registered for event.
func (s *Server) Subscribers(event string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.mu.Lock()
		if c.events[event] {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// Disconnect closes every client connection, as a charon restart would,
// and waits until their goroutines have finished. New clients may still
// connect.
func (s *Server) Disconnect() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
		<-c.done
	}
}

// Close stops the server, closes every connection and removes the socket.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.Disconnect()
	s.wg.Wait()
	os.RemoveAll(s.dir)
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &conn{
			s:      s,
			nc:     nc,
			events: map[string]bool{},
			gone:   make(chan struct{}),
			done:   make(chan struct{}),
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go c.serve()
	}
}

type conn struct {
	s  *Server
	nc net.Conn

	wmu sync.Mutex // serializes writes: responses and events from other goroutines

	mu     sync.Mutex
	events map[string]bool
	closed bool

	gone chan struct{} // closed by close()
	done chan struct{} // closed when serve returns
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.gone)
	c.nc.Close()
}

func (c *conn) write(p Packet) error {
	b, err := EncodePacket(p)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.nc.Write(b)
	return err
}

func (c *conn) event(name string, m *govici.Message) bool {
	c.mu.Lock()
	ok := c.events[name] && !c.closed
	c.mu.Unlock()
	if !ok {
		return false
	}
	if m == nil {
		m = govici.NewMessage()
	}
	return c.write(Packet{Type: EventPacket, Name: name, Message: m}) == nil
}

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer close(c.done)
	defer func() {
		c.close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	for {
		p, err := ReadPacket(c.nc)
		if err != nil {
			return
		}
		var reply Packet
		switch p.Type {
		case CmdRequest:
			reply = c.command(p)
		case EventRegister, EventUnregister:
			if !slices.Contains(KnownEvents, p.Name) {
				reply = Packet{Type: EventUnknown}
				break
			}
			c.mu.Lock()
			c.events[p.Name] = p.Type == EventRegister
			c.mu.Unlock()
			if p.Type == EventRegister {
				if m := c.s.takeEarly(p.Name); m != nil && !c.event(p.Name, m) {
					return
				}
			}
			reply = Packet{Type: EventConfirm}
		default:
			c.s.tb.Errorf("vicitest: client sent packet type %d", p.Type)
			return
		}
		if err := c.write(reply); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.s.tb.Logf("vicitest: writing reply: %v", err)
			}
			return
		}
	}
}

func (c *conn) command(p Packet) Packet {
	c.s.mu.Lock()
	c.s.log = append(c.s.log, Received{Command: p.Name, Message: p.Message})
	h := c.s.handlers[p.Name]
	c.s.mu.Unlock()
	if h == nil {
		return Packet{Type: CmdUnknown}
	}
	resp := h(&Request{Command: p.Name, Message: p.Message, c: c})
	if resp == nil {
		resp = govici.NewMessage()
	}
	return Packet{Type: CmdResponse, Message: resp}
}
