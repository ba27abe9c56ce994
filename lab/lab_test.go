package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/swanmgr/swanmgr/lab"
)

// requireLab skips unless the machine can run a lab; with SWANMGR_E2E=1
// (CI) a missing prerequisite fails the test instead.
func requireLab(t *testing.T, b lab.Backend) {
	t.Helper()
	if err := lab.Check(b); err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			t.Fatalf("SWANMGR_E2E=1 but: %v", err)
		}
		t.Skipf("no lab here: %v", err)
	}
}

func randomPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "swlt" + hex.EncodeToString(b)
}

// upLab brings a lab up in a fresh folder (which Up creates and Down must
// remove) and registers Down for cleanup.
func upLab(t *testing.T, o lab.Options) *lab.Lab {
	t.Helper()
	requireLab(t, o.Backend)
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "lab")
	}
	if o.Prefix == "" {
		o.Prefix = randomPrefix(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	return l
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func pidExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// rules220 counts the IPv4 and IPv6 policy routing rules into charon's
// table in a host.
func rules220(t *testing.T, ctx context.Context, h *lab.Host) (v4, v6 int) {
	t.Helper()
	count := func(fam string) int {
		out, err := h.Command(ctx, "ip", fam, "rule").CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s rule in %s: %v: %s", fam, h.Name, err, out)
		}
		return strings.Count(string(out), "lookup 220")
	}
	return count("-4"), count("-6")
}

// rootLinks lists the interfaces of the root namespace.
func rootLinks(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

// killAndWait sends SIGKILL to pid and waits until it has exited.
func killAndWait(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	// The pidfd turns readable when the process has exited.
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000); n != 1 {
		t.Fatalf("pid %d did not exit after SIGKILL: %v", pid, err)
	}
}

func TestIntegrationLab(t *testing.T) {
	requireLab(t, lab.Libipsec)
	before := rootLinks(t)
	l := upLab(t, lab.Options{})
	if after := rootLinks(t); after != before {
		t.Errorf("root namespace interfaces changed by Up:\nbefore: %s\nafter:  %s", before, after)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	alice, bob := l.Host("alice"), l.Host("bob")
	if alice == nil || bob == nil || l.Host("eve") == nil || len(l.Hosts) != 3 {
		t.Fatalf("hosts: %+v", l.Hosts)
	}
	if got := alice.Addr.String(); got != "172.16.98.231" {
		t.Errorf("alice at %s", got)
	}
	if got := bob.Addr.String(); got != "172.31.67.244" {
		t.Errorf("bob at %s", got)
	}

	t.Run("charons answer", func(t *testing.T) {
		for _, h := range l.Hosts {
			out, err := h.Swanctl(ctx, "--stats").CombinedOutput()
			if err != nil {
				t.Fatalf("%s: swanctl --stats: %v\n%s", h.Name, err, out)
			}
			for _, want := range []string{"kernel-libipsec", "curve25519", "counters", "vici"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: plugin %s not loaded:\n%s", h.Name, want, out)
				}
			}
		}
		if st := l.Status(); !st.OK() {
			t.Errorf("Status not OK: %+v", st)
		}
	})

	t.Run("clear TCP alice to bob", func(t *testing.T) {
		ln, err := bob.Listen("tcp", bob.Addr.String()+":6667")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		type accepted struct {
			data []byte
			from net.Addr
			err  error
		}
		got := make(chan accepted, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- accepted{err: err}
				return
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			got <- accepted{b, c.RemoteAddr(), err}
		}()
		c, err := alice.Dial(ctx, "tcp", bob.Addr.String()+":6667")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hello bob")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		a := <-got
		if a.err != nil {
			t.Fatal(a.err)
		}
		if string(a.data) != "hello bob" {
			t.Errorf("bob got %q", a.data)
		}
		if host, _, _ := net.SplitHostPort(a.from.String()); host != alice.Addr.String() {
			t.Errorf("bob's peer is %s, want alice %s", a.from, alice.Addr)
		}
	})

	t.Run("restart", func(t *testing.T) {
		old := bob.Pid
		if err := bob.RestartCharon(ctx); err != nil {
			t.Fatal(err)
		}
		if bob.Pid == 0 || bob.Pid == old {
			t.Errorf("pid %d after restart, was %d", bob.Pid, old)
		}
		if pidExists(old) {
			t.Errorf("old charon %d still exists", old)
		}
		if out, err := bob.Swanctl(ctx, "--stats").CombinedOutput(); err != nil {
			t.Fatalf("swanctl --stats after restart: %v\n%s", err, out)
		}
	})

	t.Run("start and restart after kill -9", func(t *testing.T) {
		// A killed charon leaves its rules into table 220 behind; the next
		// charon must not run with two of them.
		for _, next := range []func(context.Context) error{bob.StartCharon, bob.RestartCharon} {
			old := bob.Pid
			killAndWait(t, old)
			v4, v6 := rules220(t, ctx, bob)
			t.Logf("rules into table 220 left by kill -9: %d IPv4, %d IPv6", v4, v6)
			if err := next(ctx); err != nil {
				t.Fatal(err)
			}
			if pidExists(old) {
				t.Errorf("killed charon %d still exists", old)
			}
			if v4, v6 := rules220(t, ctx, bob); v4 != 1 || v6 != 1 {
				t.Errorf("%d IPv4 and %d IPv6 rules into table 220 after start, want 1 each", v4, v6)
			}
		}
	})

	t.Run("stopped charon", func(t *testing.T) {
		eve := l.Host("eve")
		if err := eve.StopCharon(); err != nil {
			t.Fatal(err)
		}
		st := l.Status()
		for _, h := range st.Hosts {
			if h.Name == "eve" && (h.Running || h.Answers || !h.NetnsUp) {
				t.Errorf("eve stopped but %+v", h)
			}
		}
		if err := eve.StopCharon(); err != nil {
			t.Errorf("second stop: %v", err)
		}
		if err := eve.StartCharon(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("open and down", func(t *testing.T) {
		if _, err := lab.Up(ctx, lab.Options{Dir: l.Dir, Prefix: l.Prefix}); !errors.Is(err, lab.ErrAlreadyUp) {
			t.Errorf("second Up: %v, want ErrAlreadyUp", err)
		}
		o, err := lab.Open(l.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if st := o.Status(); !st.OK() {
			t.Errorf("opened lab not OK: %+v", st)
		}
		var pids []int
		for _, h := range o.Hosts {
			pids = append(pids, h.Pid)
		}
		// Down through the opened lab, as `swanmgr lab down` does.
		if err := o.Down(); err != nil {
			t.Fatal(err)
		}
		// The lab l from Up reaps its children; wait for that through its
		// own Down, which must find nothing left to do.
		if err := l.Down(); err != nil {
			t.Fatalf("second Down: %v", err)
		}
		for _, pid := range pids {
			if pidExists(pid) {
				t.Errorf("charon %d still exists", pid)
			}
		}
		if list := netnsList(t); strings.Contains(list, l.Prefix) {
			t.Errorf("namespaces left:\n%s", list)
		}
		if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
			left, _ := filepath.Glob(filepath.Join(l.Dir, "*"))
			t.Errorf("lab folder left: %v %v", err, left)
		}
		if _, err := lab.Open(l.Dir); !errors.Is(err, lab.ErrNotUp) {
			t.Errorf("Open after Down: %v, want ErrNotUp", err)
		}
	})
}

// TestIntegrationKernelBackend checks the kernel-netlink-only charon
// starts, and that Down leaves a folder it did not create in place.
func TestIntegrationKernelBackend(t *testing.T) {
	requireLab(t, lab.Kernel)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Dir: dir, Backend: lab.Kernel, Prefix: randomPrefix(t), Hosts: []string{"alice", "carol"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Down()
	if got := l.Host("carol").Addr.String(); got != "172.24.0.10" {
		t.Errorf("carol at %s", got)
	}
	out, err := l.Host("alice").Swanctl(ctx, "--stats").CombinedOutput()
	if err != nil {
		t.Fatalf("swanctl --stats: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "kernel-libipsec") || !strings.Contains(string(out), "kernel-netlink") {
		t.Errorf("plugins:\n%s", out)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("folder given to Up removed: %v", err)
	}
	if len(left) != 0 {
		t.Errorf("files left in %s: %v", dir, left)
	}
	if list := netnsList(t); strings.Contains(list, l.Prefix) {
		t.Errorf("namespaces left:\n%s", list)
	}
}

// swanctlConf is a PSK host-to-host tunnel for the libipsec lab: the IKE
// peers are the selectors, one TCP port on the responder's side.
func swanctlConf(local, remote, localTS, remoteTS string) string {
	return `connections {
  peer {
    version = 2
    local_addrs = ` + local + `
    remote_addrs = ` + remote + `
    proposals = aes256gcm16-prfsha384-x25519
    local {
      auth = psk
      id = ` + local + `
    }
    remote {
      auth = psk
      id = ` + remote + `
    }
    children {
      irc {
        mode = tunnel
        local_ts = ` + localTS + `
        remote_ts = ` + remoteTS + `
        esp_proposals = aes256gcm16-x25519
        start_action = none
      }
    }
  }
}
secrets {
  ike-peer {
    id-1 = ` + local + `
    id-2 = ` + remote + `
    secret = "lab-test-psk-0123456789"
  }
}
`
}

// TestIntegrationLibipsecTunnel proves the lab's libipsec settings: an
// ESP SA between the two hosts comes up, TCP to the protected port
// arrives, and bob's wire shows only ESP in UDP, never the payload.
func TestIntegrationLibipsecTunnel(t *testing.T) {
	requireLab(t, lab.Libipsec)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		if os.Getenv("SWANMGR_E2E") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	l := upLab(t, lab.Options{Hosts: []string{"alice", "bob"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := l.Host("alice"), l.Host("bob")
	a, b := alice.Addr.String(), bob.Addr.String()

	confs := t.TempDir()
	for _, c := range []struct {
		h    *lab.Host
		conf string
	}{
		{bob, swanctlConf(b, a, "dynamic[tcp/6667]", "dynamic[tcp]")},
		{alice, swanctlConf(a, b, "dynamic[tcp]", "dynamic[tcp/6667]")},
	} {
		f := filepath.Join(confs, c.h.Name+".conf")
		if err := os.WriteFile(f, []byte(c.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := c.h.Swanctl(ctx, "--load-all", "--file", f).CombinedOutput(); err != nil {
			t.Fatalf("%s: swanctl --load-all: %v\n%s", c.h.Name, err, out)
		}
	}
	if out, err := alice.Swanctl(ctx, "--initiate", "--child", "irc", "--timeout", "10").CombinedOutput(); err != nil {
		t.Fatalf("swanctl --initiate: %v\n%s", err, out)
	}
	out, err := alice.Swanctl(ctx, "--list-sas").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256") {
		t.Fatalf("no installed CHILD_SA: %v\n%s", err, out)
	}

	// tcpdump on bob's wire: --immediate-mode and -l so that every packet
	// is printed at once; it says "listening on" when it captures.
	capCtx, stopCap := context.WithCancel(ctx)
	defer stopCap()
	td := bob.Command(capCtx, "tcpdump", "--immediate-mode", "-l", "-n", "-A", "-i", bob.Iface)
	var wire lockedBuffer
	td.Stdout = &wire
	stderr, err := td.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	defer td.Wait()
	listening := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		var seen strings.Builder
		for {
			n, err := stderr.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "listening on") {
				listening <- true
				io.Copy(io.Discard, stderr)
				return
			}
			if err != nil {
				listening <- false
				return
			}
		}
	}()
	if !<-listening {
		t.Fatal("tcpdump did not start")
	}

	const payload = "PRIVMSG #lab :the-cleartext-must-not-show"
	ln, err := bob.Listen("tcp", b+":6667")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		data, _ := io.ReadAll(c)
		got <- string(data)
	}()
	c, err := alice.Dial(ctx, "tcp", b+":6667")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if g := <-got; g != payload {
		t.Fatalf("bob got %q", g)
	}
	// The FIN from alice is the last packet bob's listener needed; wait
	// until tcpdump has printed ESP from alice, then stop it.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(wire.String(), a+".4500 > "+b+".4500: UDP-encap: ESP") {
		if time.Now().After(deadline) {
			t.Fatalf("no ESP from alice on bob's wire:\n%s", wire.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopCap()
	if w := wire.String(); strings.Contains(w, "cleartext-must-not-show") || strings.Contains(w, ".6667:") {
		t.Errorf("payload or plain TCP on bob's wire:\n%s", w)
	}
	for _, line := range strings.Split(wire.String(), "\n") {
		if strings.Contains(line, "UDP-encap: ESP") {
			t.Logf("bob's wire: %s", line)
			break
		}
	}
	out, err = bob.Swanctl(ctx, "--list-sas").CombinedOutput()
	if err != nil {
		t.Fatalf("bob: swanctl --list-sas: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`in\s+[0-9a-f]+,\s+\d+ bytes,\s+(\d+) packets`).FindStringSubmatch(string(out))
	if m == nil || m[1] == "0" {
		t.Errorf("bob's CHILD_SA counted no inbound packets:\n%s", out)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// OnlyESP: ESP seen, nothing clear to the port, the message never seen.
func TestOnlyESP(t *testing.T) {
	esp := []string{"12:00:00.000000 IP 172.16.98.231.4500 > 172.31.67.244.4500: UDP-encap: ESP(spi=0x1,seq=0x1), length 100"}
	clear := []string{"12:00:00.000000 IP 172.16.98.231.40000 > 172.31.67.244.6667: Flags [S], seq 1, win 1, length 0"}
	for _, tc := range []struct {
		name  string
		lines []string
		want  bool
	}{
		{"ESP only", esp, true},
		{"nothing", nil, false},
		{"a clear packet too", append(append([]string{}, esp...), clear...), false},
		{"the message in clear", append(append([]string{}, esp...), "E..<..hello bob"), false},
	} {
		ok, _ := lab.Summarize(tc.lines, 6667).OnlyESP(tc.lines, 6667, "hello bob")
		if ok != tc.want {
			t.Errorf("%s: OnlyESP = %v, want %v", tc.name, ok, tc.want)
		}
	}
}
