package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// startTimeout bounds the wait for a new charon's VICI socket when the
	// context has no earlier deadline; charon is ready in about 0.1 s here.
	startTimeout = 20 * time.Second
	// stopTimeout is how long a charon gets after SIGTERM before SIGKILL; a
	// clean shutdown took up to 2 s here.
	stopTimeout = 10 * time.Second
	// readyPoll is the interval between dials of the VICI socket.
	readyPoll = 20 * time.Millisecond
	// charonTable is the routing table charon installs its routes and rule
	// into (charon.routing_table's default).
	charonTable = "220"
)

// charonScript runs as `sh -c charonScript CharonPath` inside the host's
// network namespace and a private mount namespace: a tmpfs on /run gives
// each charon its own /var/run/charon.pid (the path is compiled in), then
// exec makes charon the process the lab started, so its pid is ours.
const charonScript = `mount -t tmpfs -o mode=0755 swanmgr-lab /run && exec "$0"`

// Host is one lab host: a network namespace with one interface on the
// switch and one charon.
type Host struct {
	Name  string
	Netns string     // network namespace, under /run/netns
	Addr  netip.Addr // on Iface, in Lab.Segment
	// Addr6 is the host's IPv6 address on Iface (in Segment6) when the
	// lab was built with Options.IPv6; the zero Addr otherwise.
	Addr6 netip.Addr
	Iface string // interface to the switch, inside Netns
	// Socket is the VICI unix socket path (no scheme); URI adds it.
	Socket string
	Conf   string // strongswan.conf
	Log    string // charon's file log
	// Pid is charon's pid, 0 when stopped. It changes on Start/Stop, which
	// do not synchronize with readers; concurrent observers use Lab.Status.
	Pid int

	start uint64        // process start time of Pid, see hostState.Start
	done  chan struct{} // closed when charon, our child, has been reaped; nil if not our child
	lab   *Lab
	mu    sync.Mutex // serializes StartCharon and StopCharon
}

// URI is the VICI socket as swanctl --uri and govici want it.
func (h *Host) URI() string { return "unix://" + h.Socket }

func (h *Host) dir() string        { return filepath.Dir(h.Conf) }
func (h *Host) stderrPath() string { return filepath.Join(h.dir(), "charon.stderr") }

func (h *Host) proc() (int, uint64) {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	return h.Pid, h.start
}

func (h *Host) setProc(pid int, start uint64, done chan struct{}) error {
	h.lab.mu.Lock()
	h.Pid, h.start, h.done = pid, start, done
	h.lab.mu.Unlock()
	return h.lab.save()
}

// Command returns a command that runs inside the host's network namespace
// (ip netns exec).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
}

// Swanctl returns a swanctl command talking to the host's charon: args
// start with the swanctl command (e.g. "--list-sas"); --uri is appended.
// It runs in the root namespace, which is fine for a unix socket; pass
// --file for --load-* commands, which otherwise read /etc/swanctl.
func (h *Host) Swanctl(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "swanctl", append(args, "--uri", h.URI())...)
}

// StartCharon starts the host's charon and waits until its VICI socket
// accepts connections, or until ctx ends (at most 20 s). If charon exits
// or does not answer in time, the error holds the tail of its log and the
// process is stopped. charon keeps running after the calling process
// exits (it gets its own session), so `lab up` can return.
func (h *Host) StartCharon(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pid, start := h.proc(); pid != 0 {
		if alive(pid, start) {
			return fmt.Errorf("lab: %s: charon runs already (pid %d)", h.Name, pid)
		}
		// It died without StopCharon (crash, kill -9): clean up after it.
		if err := h.stopLocked(); err != nil {
			return err
		}
	}
	if err := os.Remove(h.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab: %s: %w", h.Name, err)
	}
	// Errors show the log lines of this start only.
	logFrom := map[string]int64{}
	for _, p := range []string{h.Log, h.stderrPath()} {
		if fi, err := os.Stat(p); err == nil {
			logFrom[p] = fi.Size()
		}
	}
	out, err := os.OpenFile(h.stderrPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %s: %w", h.Name, err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.Netns,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", charonScript, CharonPath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF=" + h.Conf}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	// Its own session: a Ctrl-C to `swanmgr lab up` must not reach charon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	out.Close() // the child holds its own copy
	if err != nil {
		return fmt.Errorf("lab: %s: start charon: %w", h.Name, err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reaps; the exit status is in the logs
		close(done)
	}()
	// exec keeps the start time, so reading it before ip has exec'd charon
	// is fine.
	start, err := procStart(pid)
	if err != nil {
		<-done // it has exited already
		return fmt.Errorf("lab: %s: charon exited at once\n%s", h.Name, h.logTail(logFrom))
	}
	if err := h.setProc(pid, start, done); err != nil {
		return errors.Join(err, h.stopLocked())
	}

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if socketAnswers(h.Socket) {
			return nil
		}
		select {
		case <-done:
			err := fmt.Errorf("lab: %s: charon (pid %d) exited while starting\n%s", h.Name, pid, h.logTail(logFrom))
			return errors.Join(err, h.stopLocked())
		case <-ctx.Done():
			err := fmt.Errorf("lab: %s: charon (pid %d) did not open %s: %w\n%s", h.Name, pid, h.Socket, ctx.Err(), h.logTail(logFrom))
			return errors.Join(err, h.stopLocked())
		case <-tick.C:
		}
	}
}

// StopCharon ends the host's charon: SIGTERM to its pid (after checking
// the pid is still the charon the lab started), SIGKILL after 10 s. Then
// it removes what a killed charon leaves in the namespace: the IPv4 and
// IPv6 rules and routes of table 220, XFRM states and policies, and the
// VICI socket file. Stopping a stopped charon does nothing. StartCharon
// does the same cleanup when the recorded charon died on its own.
func (h *Host) StopCharon() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopLocked()
}

func (h *Host) stopLocked() error {
	pid, start := h.proc()
	if pid == 0 {
		return nil
	}
	if err := stopProcess(pid, start); err != nil {
		return fmt.Errorf("lab: %s: %w", h.Name, err)
	}
	h.lab.mu.Lock()
	done := h.done
	h.lab.mu.Unlock()
	if done != nil {
		// Our child: wait until Wait has reaped it, so its pid is gone.
		<-done
	}
	var errs []error
	if err := h.setProc(0, 0, nil); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(h.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("lab: %s: %w", h.Name, err))
	}
	if netnsExists(h.Netns) {
		if err := h.cleanNetns(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RestartCharon stops and starts the host's charon; all VICI state
// (connections, secrets, SAs) is lost.
func (h *Host) RestartCharon(ctx context.Context) error {
	if err := h.StopCharon(); err != nil {
		return err
	}
	return h.StartCharon(ctx)
}

// cleanNetns removes what a charon that did not shut down cleanly leaves
// behind. A stale `ip rule ... lookup 220` is the dangerous one: the next
// charon adds its own and IKE traffic ends up in the TUN device.
func (h *Host) cleanNetns() error {
	ctx := context.Background()
	var errs []error
	// charon adds the rule for both families, whether IPv6 is on or not.
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.CommandContext(ctx, "ip", fam, "-n", h.Netns, "rule", "show", "table", charonTable).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("lab: %s: ip %s rule show: %w", h.Name, fam, err))
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			pref, _, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if err := ip(ctx, fam, "-n", h.Netns, "rule", "del", "pref", pref, "table", charonTable); err != nil {
				errs = append(errs, err)
			}
		}
		// Fails when the table does not exist, which is the usual case.
		_ = ip(ctx, fam, "-n", h.Netns, "route", "flush", "table", charonTable)
	}
	for _, what := range []string{"policy", "state"} {
		if err := ip(ctx, "-n", h.Netns, "xfrm", what, "flush"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logTail returns the last lines of charon's log and stderr written after
// the offsets in from, for errors.
func (h *Host) logTail(from map[string]int64) string {
	var b strings.Builder
	for _, p := range []string{h.Log, h.stderrPath()} {
		if t := tail(p, from[p], 20); t != "" {
			fmt.Fprintf(&b, "--- last lines of %s:\n%s\n", p, t)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// tail returns the last lines of path after offset from.
func tail(path string, from int64, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-from > max {
		from = fi.Size() - max
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	all := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return string(bytes.Join(all, []byte("\n")))
}

// socketAnswers reports whether a unix socket accepts a connection.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// procStart returns the start time of a process (field 22 of
// /proc/PID/stat) and an error if it does not exist or is a zombie.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d: exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether pid is a live process that started at start.
func alive(pid int, start uint64) bool {
	s, err := procStart(pid)
	return err == nil && s == start
}

// stopProcess ends the process pid if it is still the one that started at
// start: SIGTERM, then SIGKILL after stopTimeout. A pidfd, opened before
// the start time is compared, makes sure the signals cannot reach a
// process that reused the pid.
func stopProcess(pid int, start uint64) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !alive(pid, start) {
		return nil
	}
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		if err := unix.PidfdSendSignal(fd, sig, nil, 0); errors.Is(err, unix.ESRCH) {
			return nil
		} else if err != nil {
			return fmt.Errorf("signal %v to %d: %w", sig, pid, err)
		}
		wait := stopTimeout
		if sig == unix.SIGKILL {
			wait = 5 * time.Second
		}
		exited, err := waitPidfd(fd, wait)
		if err != nil {
			return fmt.Errorf("wait for %d: %w", pid, err)
		}
		if exited {
			return nil
		}
	}
	return fmt.Errorf("process %d did not exit after SIGKILL", pid)
}

// waitPidfd waits until the process of a pidfd has exited (the pidfd
// becomes readable) or d has passed.
func waitPidfd(fd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return false, nil
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
}
