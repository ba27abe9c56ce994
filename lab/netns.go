package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets fn creates belong to that namespace for their whole
// life, whichever thread uses them later.
//
// The thread is never switched back: its goroutine ends while still
// locked, so the Go runtime discards the thread instead of letting other
// goroutines run in the lab's namespace. fn must not start goroutines that
// create sockets (they would run on other threads, in the root namespace).
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			errc <- fmt.Errorf("lab: netns %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("lab: setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// literal checks that addr is "ip:port" or ":port" with a literal IP, so
// that no name lookup (which may run on another thread) is needed.
func literal(addr string, emptyHostOK bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if host == "" && emptyHostOK {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("lab: address %q: want a literal IP, not a name", addr)
	}
	return nil
}

// Listen opens a listener inside the host's network namespace, from the
// calling process (no nc needed). addr is "ip:port" or ":port" with a
// literal IP; network as for net.Listen ("tcp", "tcp4").
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	if err := literal(addr, true); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := inNetns(h.Netns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen: %w", h.Name, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet networks ("udp", "udp4").
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	if err := literal(addr, true); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := inNetns(h.Netns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: listen: %w", h.Name, err)
	}
	return pc, nil
}

// Dial connects from inside the host's network namespace. addr is
// "ip:port" with a literal IP; network as for net.Dial.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := literal(addr, false); err != nil {
		return nil, err
	}
	var c net.Conn
	err := inNetns(h.Netns, func() error {
		var err error
		// One literal address: the dialer connects on this goroutine.
		c, err = new(net.Dialer).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: %s: dial: %w", h.Name, err)
	}
	return c, nil
}
