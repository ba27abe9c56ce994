package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Send carries msg from one lab host to another over proto ("tcp" or
// "udp") to port on the receiver, and returns what the receiver read.
// Both sockets are opened inside the hosts' namespaces; nothing leaves
// the lab. For TCP the receiver reads until the sender closes; for UDP
// it reads one datagram, and the sender repeats the datagram until it
// arrives or ctx ends (the first ones may start an SA).
func Send(ctx context.Context, from, to *Host, proto string, port int, msg []byte) ([]byte, error) {
	addr := netip.AddrPortFrom(to.Addr, uint16(port)).String()
	switch proto {
	case "tcp":
		ln, err := to.Listen("tcp4", addr)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		got := make(chan []byte, 1)
		errc := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			if d, ok := ctx.Deadline(); ok {
				c.SetDeadline(d)
			}
			b, err := io.ReadAll(c)
			if err != nil {
				errc <- err
				return
			}
			got <- b
		}()
		c, err := from.Dial(ctx, "tcp4", addr)
		if err != nil {
			return nil, err
		}
		if d, ok := ctx.Deadline(); ok {
			c.SetDeadline(d)
		}
		_, werr := c.Write(msg)
		c.Close()
		if werr != nil {
			return nil, fmt.Errorf("lab: %s: sending to %s: %w", from.Name, addr, werr)
		}
		select {
		case b := <-got:
			return b, nil
		case err := <-errc:
			return nil, fmt.Errorf("lab: %s: receiving on %s: %w", to.Name, addr, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("lab: %s: nothing arrived on %s: %w", to.Name, addr, ctx.Err())
		}
	case "udp":
		pc, err := to.ListenPacket("udp4", addr)
		if err != nil {
			return nil, err
		}
		defer pc.Close()
		c, err := from.Dial(ctx, "udp4", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		buf := make([]byte, 65536)
		for {
			// ECONNREFUSED or EPERM from a trap or drop policy: the next
			// round tries again; only the reply below counts.
			c.Write(msg)
			pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err == nil {
				return append([]byte{}, buf[:n]...), nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("lab: %s: nothing arrived on udp %s: %w", to.Name, addr, ctx.Err())
			}
		}
	}
	return nil, fmt.Errorf("lab: protocol %q: use tcp or udp", proto)
}

// Capture is tcpdump running on a host's lab interface.
type Capture struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced whenever a line arrives
	done  chan struct{}
	err   error
}

// StartCapture runs tcpdump on the host's interface with a capture filter
// (for example "tcp port 6667 or udp port 4500 or esp"), printing packet
// contents as ASCII so a test can tell whether a payload crossed the wire
// in clear. It returns once tcpdump is listening.
func (h *Host) StartCapture(ctx context.Context, filter string) (*Capture, error) {
	args := []string{"-i", h.Iface, "-n", "-l", "--immediate-mode", "-A", "-s", "0"}
	args = append(args, strings.Fields(filter)...)
	cmd := h.Command(context.Background(), "tcpdump", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	listening := make(chan struct{})
	cmd.Stderr = &lineWatcher{buf: &stderr, word: "listening on", hit: listening}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: %s: tcpdump: %w", h.Name, err)
	}
	c := &Capture{cmd: cmd, more: make(chan struct{}), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			close(c.more)
			c.more = make(chan struct{})
			c.mu.Unlock()
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case <-listening:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("lab: %s: tcpdump exited: %s", h.Name, strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		c.Stop()
		return nil, fmt.Errorf("lab: %s: tcpdump did not start listening: %w", h.Name, ctx.Err())
	}
}

// WaitFor waits until a captured line satisfies match, or ctx ends.
func (c *Capture) WaitFor(ctx context.Context, match func(string) bool) error {
	seen := 0
	for {
		c.mu.Lock()
		for ; seen < len(c.lines); seen++ {
			if match(c.lines[seen]) {
				c.mu.Unlock()
				return nil
			}
		}
		more := c.more
		c.mu.Unlock()
		select {
		case <-more:
		case <-c.done:
			return errors.New("lab: tcpdump exited")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Lines returns what was captured so far.
func (c *Capture) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{}, c.lines...)
}

// Stop ends tcpdump (by its pid) and returns every captured line.
func (c *Capture) Stop() []string {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
	}
	<-c.done
	return c.Lines()
}

// lineWatcher collects stderr and signals when a word appears.
type lineWatcher struct {
	buf  *bytes.Buffer
	word string
	hit  chan struct{}
	once sync.Once
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.word) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

// PacketSummary counts captured packet header lines by kind.
type PacketSummary struct {
	ESP     int // ESP, in UDP or not
	IKE     int // UDP 500 / 4500 without ESP
	ClearTo map[int]int
}

// OnlyESP is the lab's one definition of "the wire carried only ESP" for
// a message to port: ESP was seen, no clear packet to or from the port,
// and the message itself never appeared in the capture (lines).
func (s PacketSummary) OnlyESP(lines []string, port int, msg string) (ok bool, seenInClear bool) {
	for _, l := range lines {
		if msg != "" && strings.Contains(l, msg) {
			seenInClear = true
		}
	}
	return s.ESP > 0 && s.ClearTo[port] == 0 && !seenInClear, seenInClear
}

// Summarize counts ESP packets, IKE packets and clear TCP/UDP packets to
// or from the given ports in tcpdump -n output.
func Summarize(lines []string, ports ...int) PacketSummary {
	s := PacketSummary{ClearTo: map[int]int{}}
	for _, l := range lines {
		if !strings.Contains(l, " IP ") && !strings.HasPrefix(l, "IP ") {
			continue
		}
		switch {
		case strings.Contains(l, "ESP("):
			s.ESP++
		case strings.Contains(l, ".500:") || strings.Contains(l, ".4500:") || strings.Contains(l, "isakmp"):
			s.IKE++
		default:
			for _, p := range ports {
				ps := "." + strconv.Itoa(p)
				if strings.Contains(l, ps+":") || strings.Contains(l, ps+" >") {
					s.ClearTo[p]++
				}
			}
		}
	}
	return s
}
