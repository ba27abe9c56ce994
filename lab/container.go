package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// One lab host without the lab around it: what a container (or any
// machine that is already "the host") runs. `swanmgr lab host` uses these,
// and so does the docker-compose lab's entrypoint; the files and charon's
// settings are the ones Up writes for each of its hosts, so the container
// lab and the namespace lab cannot drift apart.

// HostFiles are a host's files in its folder, laid out as Up lays out
// <lab dir>/<host>.
type HostFiles struct {
	Dir    string
	Conf   string // strongswan.conf
	Socket string // VICI socket (no scheme)
	Log    string // charon's file log
	Ready  string // written once the policy is assigned, removed on exit
}

// FilesIn returns the file layout of a host folder.
func FilesIn(dir string) HostFiles {
	return HostFiles{
		Dir:    dir,
		Conf:   filepath.Join(dir, "strongswan.conf"),
		Socket: filepath.Join(dir, "charon.vici"),
		Log:    filepath.Join(dir, "charon.log"),
		Ready:  filepath.Join(dir, "ready"),
	}
}

// pluginPackages names the Debian 12 package that ships each plugin of
// the lab's load lists (conf.go). A container image missing one of them
// gets a charon that starts without the plugin and fails only later, at
// a load-conn or in IKE, with an error that does not name it.
var pluginPackages = map[string]string{
	"openssl":         "libstrongswan-standard-plugins",
	"gcm":             "libstrongswan-standard-plugins",
	"curve25519":      "libstrongswan-extra-plugins",
	"kernel-libipsec": "libcharon-extra-plugins",
	"socket-default":  "strongswan-libcharon",
	"counters":        "strongswan-libcharon",
	"updown":          "strongswan-libcharon",
	"vici":            "strongswan-swanctl",
}

// MissingPlugins returns, sorted, the plugins of the backend's load list
// that are not among loaded (VICI stats' plugin list), each followed by
// the package that ships it: "gcm (libstrongswan-standard-plugins)".
func MissingPlugins(b Backend, loaded []string) []string {
	have := map[string]bool{}
	for _, p := range loaded {
		have[p] = true
	}
	var missing []string
	for _, p := range plugins(b) {
		if have[p] {
			continue
		}
		pkg := pluginPackages[p]
		if pkg == "" {
			pkg = "libstrongswan"
		}
		missing = append(missing, fmt.Sprintf("%s (%s)", p, pkg))
	}
	sort.Strings(missing)
	return missing
}

// ProtocolsFile is where charon (getprotobyname) looks up the protocol
// names of traffic selectors such as dynamic[tcp/6667].
const ProtocolsFile = "/etc/protocols"

// CheckProtocols returns an error naming every protocol in names that the
// protocols file (ProtocolsFile in a container) does not define; charon
// would reject a selector using it ("invalid value for: local_ts").
// Numeric protocols need no entry.
func CheckProtocols(file string, names []string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("lab: charon resolves protocol names with %s (package netbase): %w", file, err)
	}
	known := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		known[f[0]] = true
		for _, alias := range f[2:] {
			known[alias] = true
		}
	}
	var missing []string
	for _, n := range names {
		if n == "" || strings.Trim(n, "0123456789") == "" || known[n] || known[strings.ToLower(n)] {
			continue
		}
		missing = append(missing, n)
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: %s does not define protocol %s, which the policy's selectors use (install netbase)", file, strings.Join(missing, ", "))
	}
	return nil
}

// HostConf returns the strongswan.conf Up writes for a host.
func HostConf(b Backend, host string, f HostFiles, verbose bool) string {
	return strongswanConf(b, host, f.Socket, f.Log, verbose)
}

// WriteHostConf creates the host folder and writes its strongswan.conf as
// Up does.
func WriteHostConf(b Backend, host string, f HostFiles, verbose bool) error {
	if b != Libipsec && b != Kernel {
		return fmt.Errorf("lab: unknown backend %q: use %q or %q", b, Libipsec, Kernel)
	}
	// sun_path holds 108 bytes including the terminating NUL.
	if len(f.Socket) > 107 {
		return fmt.Errorf("lab: socket path %s longer than 107 bytes; use a shorter folder", f.Socket)
	}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(f.Conf, []byte(HostConf(b, host, f, verbose)), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Charon is a charon started by StartLocalCharon: a child of this process,
// in this process's network namespace.
type Charon struct {
	Pid    int
	Socket string
	done   chan struct{}
	err    error // Wait's result, valid once done is closed
}

// StartLocalCharon starts charon with the given strongswan.conf in the
// current network and mount namespaces (a container has its own; the
// namespace lab wraps the call in `ip netns exec` and a private /run) and
// waits until its VICI socket answers, as Host.StartCharon does. charon's
// output goes to out.
func StartLocalCharon(ctx context.Context, f HostFiles, out io.Writer) (*Charon, error) {
	if _, err := os.Stat(CharonPath); err != nil {
		return nil, fmt.Errorf("lab: charon missing (install strongswan-charon): %w", err)
	}
	if err := os.Remove(f.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cmd := exec.Command(CharonPath)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF=" + f.Conf}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start charon: %w", err)
	}
	c := &Charon{Pid: cmd.Process.Pid, Socket: f.Socket, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if socketAnswers(f.Socket) {
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("lab: charon (pid %d) exited while starting (%v)\n%s", c.Pid, c.err, tail(f.Log, 0, 20))
		case <-ctx.Done():
			err := fmt.Errorf("lab: charon (pid %d) did not open %s: %w\n%s", c.Pid, f.Socket, ctx.Err(), tail(f.Log, 0, 20))
			return nil, errors.Join(err, c.Stop())
		case <-tick.C:
		}
	}
}

// Done is closed when charon has exited.
func (c *Charon) Done() <-chan struct{} { return c.done }

// Err is how charon exited; valid once Done is closed.
func (c *Charon) Err() error { return c.err }

// Stop sends charon SIGTERM, and SIGKILL if it has not exited after 10 s.
func (c *Charon) Stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(c.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("lab: signal %v to charon %d: %w", sig, c.Pid, err)
		}
		select {
		case <-c.done:
			return nil
		case <-time.After(stopTimeout):
		}
	}
	return fmt.Errorf("lab: charon %d did not exit after SIGKILL", c.Pid)
}
