package netfilter

import (
	"io"
	"os/exec"
	"strings"
)

// An nft started ahead of its transaction: an apply's first change of the
// guard is on its path (the connections load after it), and nft's start
// (the process, its libraries, before it reads a line) took 6–15 ms of
// it. nft -f - waits for its script on stdin without touching the kernel,
// so one is started when an apply begins (Warm: made ready, its first
// change is sent as soon as the plan holds) and when a change is made
// ready without one waiting (PrepareFrom: the last change, sent once the
// connections are loaded), and run hands it the transaction. One never
// used is given an empty script (Close), on which nft does nothing; one
// left when swanmgr exits reads the end of its input and does the same.
type spareNft struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *strings.Builder // read once exited has its value
	exited chan error
}

// startNft starts nft -f -, its script to come on stdin, from the
// calling thread, which must be in the table's namespace (t.in).
func startNft() (*spareNft, error) {
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, noNft(err)
	}
	cmd := exec.Command(path, "-f", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &spareNft{cmd: cmd, stdin: stdin, stderr: &stderr, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// prestart starts an nft for the next transaction in the background,
// unless one is there (t.mu held). Only for the kernel's table, whose
// transactions run sends itself.
func (t *Table) prestart() {
	if !t.kernel || t.plain || t.spare != nil {
		return
	}
	c := make(chan *spareNft, 1)
	t.spare = c
	go func() {
		var p *spareNft
		if err := t.in(func() (err error) {
			p, err = startNft()
			return err
		}); err != nil {
			p = nil // run starts one itself, and says why it cannot
		}
		c <- p
	}()
}

// takeSpare returns the nft started ahead, if there is one still waiting.
func (t *Table) takeSpare() *spareNft {
	t.mu.Lock()
	c := t.spare
	t.spare = nil
	t.mu.Unlock()
	if c == nil {
		return nil
	}
	p := <-c
	if p == nil {
		return nil
	}
	select {
	case <-p.exited: // gone while it waited (killed)
		return nil
	default:
		return p
	}
}

// dropSpare ends the nft started ahead, if any, with an empty script.
func (t *Table) dropSpare() {
	if p := t.takeSpare(); p != nil {
		p.stdin.Close()
		<-p.exited
	}
}
