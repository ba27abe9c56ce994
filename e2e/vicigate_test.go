package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// gateEnv makes this test binary a VICI gate (see viciGate) instead of
// running tests: its value is charon's moved-aside socket, the gate
// listens at the path in gateListenEnv.
const (
	gateEnv       = "SWANMGR_E2E_VICI_GATE"
	gateListenEnv = "SWANMGR_E2E_VICI_GATE_LISTEN"
)

func TestMain(m *testing.M) {
	if up := os.Getenv(gateEnv); up != "" {
		if err := runGate(up, os.Getenv(gateListenEnv), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "vici gate:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// viciGate stands between swanmgr and a real charon at charon's own socket
// path (so that swanmgr's record, kept by socket path, is the usual one):
// charon's socket is moved aside and a gate process listens where it was,
// forwarding every connection to charon. The gate runs in charon's network
// namespace and under a name starting with charon, because swanmgr puts
// the guard in the namespace of the process it finds at the socket and
// refuses one not named so. Each command request's name goes to onCommand
// before it is forwarded; onCommand may block (holding that command back,
// as a slow charon would) and returns false to drop the connection
// instead. It lets a test stop an apply at a chosen step rather than race
// it.
type viciGate struct {
	t      *testing.T
	path   string // charon's socket path, where the gate listens
	moved  string // where charon's socket is meanwhile
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	closed sync.Once
}

func newViciGate(t *testing.T, h *lab.Host, onCommand func(name string) bool) *viciGate {
	return newViciRelay(t, h, "charon-vici-gate", onCommand)
}

// newViciRelay is newViciGate with the gate process named name.
func newViciRelay(t *testing.T, h *lab.Host, name string, onCommand func(name string) bool) *viciGate {
	t.Helper()
	g := &viciGate{t: t, path: h.Socket, moved: h.Socket + ".behind-gate"}
	if err := os.Rename(g.path, g.moved); err != nil {
		t.Fatal(err)
	}
	// swanmgr refuses a socket whose process is not named charon...: the
	// gate runs as a link of that name to this test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	g.cmd = h.Command(context.Background(), link)
	g.cmd.Env = append(os.Environ(), gateEnv+"="+g.moved, gateListenEnv+"="+g.path)
	g.cmd.Stderr = os.Stderr
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		os.Rename(g.moved, g.path)
		t.Fatal(err)
	}
	t.Cleanup(g.close)
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		g.close()
		t.Fatalf("the VICI gate did not start: %q %v", lines.Text(), lines.Err())
	}
	go func() {
		for lines.Scan() {
			name, ok := strings.CutPrefix(lines.Text(), "cmd ")
			if !ok {
				continue
			}
			answer := "drop\n"
			if onCommand(name) {
				answer = "go\n"
			}
			if _, err := io.WriteString(g.stdin, answer); err != nil {
				return
			}
		}
	}()
	return g
}

// close stops the gate and puts charon's socket back; onCommand must no
// longer block.
func (g *viciGate) close() {
	g.closed.Do(func() {
		g.stdin.Close()
		exited := make(chan error, 1)
		go func() { exited <- g.cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			g.cmd.Process.Kill()
			<-exited
		}
		os.Remove(g.path)
		if err := os.Rename(g.moved, g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			g.t.Errorf("putting charon's socket back: %v", err)
		}
	})
}

// VICI packet types (strongSwan's vici README): a client's command request
// is type 0, then a byte of name length and the name.
const viciCmdRequest = 0

// runGate is the gate process: it listens at listen, forwards each
// connection to charon at up, and asks (a "cmd NAME" line on out, a "go"
// or "drop" line back on in) before forwarding a command. It ends when in
// closes.
func runGate(up, listen string, in io.Reader, out io.Writer) error {
	ln, err := net.Listen("unix", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	answers, eof := make(chan string), make(chan struct{})
	go func() {
		defer close(eof)
		lines := bufio.NewScanner(in)
		for lines.Scan() {
			select {
			case answers <- lines.Text():
			case <-time.After(time.Minute):
			}
		}
	}()
	var askMu sync.Mutex
	ask := func(name string) bool {
		askMu.Lock()
		defer askMu.Unlock()
		if _, err := fmt.Fprintf(out, "cmd %s\n", name); err != nil {
			return false
		}
		select {
		case a := <-answers:
			return a == "go"
		case <-eof:
			return false
		}
	}
	var connsMu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", up)
			if err != nil {
				c.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, c, u)
			connsMu.Unlock()
			go func() { io.Copy(c, u); c.Close() }()
			go func() { forwardCommands(c, u, ask); u.Close() }()
		}
	}()
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	<-eof // until the test closes it (or has gone)
	connsMu.Lock()
	for _, c := range conns {
		c.Close()
	}
	connsMu.Unlock()
	return nil
}

// forwardCommands copies a client's packets to charon one by one, asking
// before each command.
func forwardCommands(from, to net.Conn, ask func(string) bool) {
	var head [4]byte
	for {
		if _, err := io.ReadFull(from, head[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > 1<<24 {
			return
		}
		pkt := make([]byte, 4+n)
		copy(pkt, head[:])
		if _, err := io.ReadFull(from, pkt[4:]); err != nil {
			return
		}
		if n >= 2 && pkt[4] == viciCmdRequest && int(pkt[5]) <= int(n)-2 {
			if !ask(string(pkt[6 : 6+int(pkt[5])])) {
				from.Close()
				return
			}
		}
		if _, err := to.Write(pkt); err != nil {
			return
		}
	}
}
