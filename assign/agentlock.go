package assign

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrAgentRunning is returned by AgentLock when another agent holds the
// socket's agent lock.
var ErrAgentRunning = errors.New("another swanmgr agent runs for this charon")

// AgentLock takes the agent lock of a socket for as long as the agent
// runs: one agent per charon. It is a file of its own beside the apply
// lock (Lock), which the agent takes and releases around each apply like
// any other swanmgr command. It never waits: a held lock fails at once
// with ErrAgentRunning, naming the holder's pid. The kernel drops the lock
// when the process ends, however it ends. Call the returned function to
// release it.
func (s Store) AgentLock(socket string) (func(), error) {
	if err := s.ensureDir(); err != nil {
		return nil, err
	}
	p := s.path(socket, ".agent.lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(holder); perr != nil || holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("%w at %s (pid %s, lock %s)", ErrAgentRunning, socket, holder, p)
		}
		return nil, fmt.Errorf("agent lock %s: %w", p, err)
	}
	// The holder's pid, for the message above; the lock itself is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
