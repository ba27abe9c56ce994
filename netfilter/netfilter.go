package netfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/swanmgr/swanmgr/guard"
)

// ErrNoNftables says the nft command is missing or unusable.
var ErrNoNftables = errors.New("netfilter: nftables is not available")

// Table is the guard's table inet swanmgr in one network namespace.
type Table struct {
	netns string   // for messages; "" = the calling thread's
	ns    *os.File // the namespace, held open: it stays the same one if charon restarts (or its pid is reused)
	// nft sends transactions. For the kernel's table (Open) it is made
	// on the first Install: knftables.New runs nft twice to check it
	// (about 50 ms), which a read never needs.
	nft knftables.Interface
	// kernel: the table is the kernel's (Open), read over netlink; not
	// a knftables.Fake (NewFor), read through nft.
	kernel bool
	// plain: nft refused a comment on an object; its transactions are
	// made by knftables.New's interface, which leaves them out.
	plain bool

	mu       sync.Mutex
	ready    chan struct{} // closed when nft is set up (or failed to be); nil: not started
	ifaceErr error
	// pending is the exit of the nft whose transaction was seen
	// committed before it exited (see commit.go); nil: none.
	pending chan error
	// spare brings the nft started ahead for the next transaction
	// (spare.go); nil: none.
	spare chan *spareNft
}

// CharonNetns returns the network namespace of the charon listening on a
// VICI socket, as a path for Open. It is always a path, never "this
// process's": a process's own namespace is not one thing — /proc/self
// shows the main thread's, and a Go program's main thread may have been
// left in another namespace by code that joined one (the lab does, on
// the goroutines it locks), while the thread that runs nft would be in
// the first. Joining charon's namespace explicitly is right either way.
func CharonNetns(socket string) (string, error) {
	c, err := net.Dial("unix", strings.TrimPrefix(socket, "unix://"))
	if err != nil {
		return "", fmt.Errorf("netfilter: %w", err)
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return "", fmt.Errorf("netfilter: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return "", fmt.Errorf("netfilter: %w", err)
	}
	if cerr != nil {
		return "", fmt.Errorf("netfilter: peer of %s: %w", socket, cerr)
	}
	// The peer is whoever listens at the path: a relay (socat, a proxy)
	// would be found instead of charon, and the guard would go into the
	// relay's namespace while the report says clear text is dropped.
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid))
	if err != nil {
		return "", fmt.Errorf("netfilter: the process behind %s (pid %d): %w", socket, cred.Pid, err)
	}
	if err := checkCharon(socket, cred.Pid, strings.TrimSpace(string(comm))); err != nil {
		return "", err
	}
	path := fmt.Sprintf("/proc/%d/ns/net", cred.Pid)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", fmt.Errorf("netfilter: network namespace of charon (pid %d): %w", cred.Pid, err)
	}
	return path, nil
}

// checkCharon refuses a VICI socket served by a process whose name is not
// one of strongSwan's daemons (charon, charon-systemd, charon-nm, ...: all
// start with "charon").
func checkCharon(socket string, pid int32, comm string) error {
	if strings.HasPrefix(comm, "charon") {
		return nil
	}
	return fmt.Errorf("netfilter: the process listening on %s is %q (pid %d), not charon: the guard goes into the network namespace of the process at charon's VICI socket, so it must be charon itself, not a relay; point --socket at the socket charon listens on", socket, comm, pid)
}

// Open returns the guard's table in the namespace netns ("" = this
// process's), after checking that the nft command is there; the table
// need not exist. Reads go over netlink; nft itself is checked and used
// on the first Install.
func Open(netns string) (*Table, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, noNft(err)
	}
	t := &Table{netns: netns, kernel: true}
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return nil, fmt.Errorf("netfilter: %w", err)
		}
		t.ns = f
	}
	return t, nil
}

func noNft(err error) error {
	return fmt.Errorf("%w (%v): install the nftables package (apt-get install nftables), or set guard = false in the policy's filter actions (see docs/enforcement.md)", ErrNoNftables, err)
}

// Warm sets up nft for the first Install in the background (assign's
// Warmer): an apply starts it before it reads the policy. For the
// kernel's table there is nothing to set up: its transactions are made
// with a knftables.Fake and sent by run, as their text, to an nft started
// now, which waits for it (spare.go); knftables.New, which runs nft twice
// to learn whether it takes comments on tables (some 20 ms of CPU that an
// apply on two CPUs waited for), is used only when nft refuses a comment
// (plainNft).
func (t *Table) Warm() {
	t.warm()
	t.mu.Lock()
	t.prestart()
	t.mu.Unlock()
}

// warm is Warm without the nft started ahead (iface's: a change made
// ready starts its own).
func (t *Table) warm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready != nil {
		return
	}
	ready := make(chan struct{})
	t.ready = ready
	if t.kernel && !t.plain {
		if t.nft == nil {
			t.nft = knftables.NewFake(knftables.InetFamily, guard.Table)
		}
		close(ready)
		return
	}
	have := t.nft != nil
	go func() {
		var nft knftables.Interface
		err := t.in(func() error {
			if have {
				return nil
			}
			var err error
			if nft, err = knftables.New(knftables.InetFamily, guard.Table, knftables.UseNetlink); err != nil {
				return noNft(err)
			}
			return nil
		})
		t.mu.Lock()
		if nft != nil {
			t.nft = nft
		}
		t.ifaceErr = err
		t.mu.Unlock()
		close(ready)
	}()
}

// iface returns the knftables interface, set up on first use (Warm). A
// failed set-up is tried again on the next call: an agent started before
// nftables was ready must not stay without a guard.
func (t *Table) iface() (knftables.Interface, error) {
	for {
		t.warm()
		t.mu.Lock()
		ready := t.ready
		t.mu.Unlock()
		if ready == nil {
			continue // reset (plainNft) between the two
		}
		<-ready
		t.mu.Lock()
		err, nft := t.ifaceErr, t.nft
		if err != nil {
			t.ready, t.ifaceErr = nil, nil
		}
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if nft != nil {
			return nft, nil
		}
		// Reset (plainNft) while this waited: set up again.
	}
}

// sets returns the table's sets, read over netlink (the kernel's table;
// conn is for further reads) or from the fake; nil, nil when there is no
// table.
func (t *Table) sets(ctx context.Context) (names []string, conn *nftables.Conn, found []*nftables.Set, err error) {
	if !t.kernel {
		names, err = t.nft.List(ctx, "sets")
		if err != nil && noTable(err) {
			return nil, nil, nil, nil
		}
		if err != nil {
			return nil, nil, nil, err
		}
		// Netlink lists maps among the sets; nft apart.
		maps, err := t.nft.List(ctx, "maps")
		return append(names, maps...), nil, nil, err
	}
	// A netlink socket of this thread, so in the table's namespace.
	if conn, err = nftables.New(); err != nil {
		return nil, nil, nil, err
	}
	found, err = conn.GetSets(&nftables.Table{Name: guard.Table, Family: nftables.TableFamilyINet})
	if err != nil {
		if noTable(err) {
			return nil, nil, nil, nil
		}
		return nil, nil, nil, err
	}
	for _, s := range found {
		names = append(names, s.Name)
	}
	return names, conn, found, nil
}

// chainRules counts the rules of each chain of the guard table (conn:
// netlink, from sets; nil: the knftables.Interface).
func (t *Table) chainRules(ctx context.Context, conn *nftables.Conn) (map[string]int, error) {
	out := map[string]int{}
	if conn == nil {
		chains, err := t.nft.List(ctx, "chains")
		if err != nil {
			return nil, err
		}
		for _, c := range chains {
			rs, err := t.nft.ListRules(ctx, c)
			if err != nil {
				return nil, err
			}
			out[c] = len(rs)
		}
		return out, nil
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != guard.Table {
			continue
		}
		rs, err := conn.GetRules(c.Table, c)
		if err != nil {
			return nil, err
		}
		out[c.Name] = len(rs)
	}
	return out, nil
}

// Close waits for the nft of the last transaction and releases the
// namespace the table was opened in.
func (t *Table) Close() error {
	t.finishPending()
	t.dropSpare()
	if t.ns == nil {
		return nil
	}
	return t.ns.Close()
}

// NewFor returns a Table that uses nft (a knftables.Interface of table
// inet swanmgr, e.g. a knftables.Fake) in this process's namespace.
func NewFor(nft knftables.Interface) *Table { return &Table{nft: nft} }

// in runs fn on a thread that has joined the table's namespace; the nft
// commands fn starts are forked from that thread and so run there. The
// thread is never switched back: its goroutine ends locked, and the Go
// runtime discards it.
func (t *Table) in(fn func() error) error {
	if t.ns == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Already there (swanmgr beside charon, in a container without the
		// right to join namespaces): run here. The thread's own namespace,
		// not /proc/self's, which is the main thread's.
		var target, here syscall.Stat_t
		if err := syscall.Fstat(int(t.ns.Fd()), &target); err != nil {
			errc <- fmt.Errorf("netfilter: %s: %w", t.netns, err)
			return
		}
		if err := syscall.Stat("/proc/thread-self/ns/net", &here); err == nil && here.Dev == target.Dev && here.Ino == target.Ino {
			runtime.UnlockOSThread()
			errc <- fn()
			return
		}
		if err := unix.Setns(int(t.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netfilter: join %s: %w", t.netns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Altered is the fingerprint of a guard table whose chains are not those
// its fingerprint says (guard.Intact: flushed or edited by hand); it
// equals no ruleset's hash, so the next install replaces the table.
const Altered = "altered"

// Fingerprint returns the hash of the ruleset the live table was made
// from (guard.Ruleset.Hash), "" when there is no guard table (or one
// swanmgr did not make), or Altered when its chains and rules are not
// what swanmgr installs. It reads set and chain names and counts rules
// over netlink: cheap whatever the number of elements.
func (t *Table) Fingerprint(ctx context.Context) (string, error) {
	var fp string
	err := t.in(func() error {
		sets, conn, _, err := t.sets(ctx)
		if err != nil {
			return err
		}
		for _, s := range sets {
			if strings.HasPrefix(s, guard.FingerprintSet) {
				if fp != "" {
					fp = "" // two: not a table swanmgr made
					return nil
				}
				fp = strings.TrimPrefix(s, guard.FingerprintSet)
			}
		}
		if fp == "" {
			return nil
		}
		rules, err := t.chainRules(ctx, conn)
		if err != nil {
			return err
		}
		if !guard.Intact(sets, rules) {
			fp = Altered
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("netfilter: reading table inet %s: %w", guard.Table, err)
	}
	return fp, nil
}

// Install makes the live table next (nil: no table), as one transaction:
// a patch from prev when the live table is prev, else a replacement. It
// reports whether anything was sent.
func (t *Table) Install(ctx context.Context, prev, next *guard.Ruleset) (bool, error) {
	run, err := t.PrepareInstall(ctx, prev, next)
	if err != nil {
		return false, err
	}
	return run(ctx)
}

// PrepareInstall is Install up to sending the transaction, which run
// does (assign's Preparer): the live table is read and the change made
// now, while the caller does something else. A patch deletes the
// fingerprint of the table it patches, so it fails whole when the table
// changed in between; run then does what Install does at that moment.
func (t *Table) PrepareInstall(ctx context.Context, prev, next *guard.Ruleset) (run func(context.Context) (bool, error), err error) {
	r := trace.StartRegion(ctx, "nft-fingerprint")
	live, err := t.Fingerprint(ctx)
	r.End()
	if err != nil {
		return nil, err
	}
	return t.prepare(ctx, live, prev, next)
}

// PrepareFrom is PrepareInstall for a table this Table has just made
// prev (an Install or a prepared install of prev sent without error): the
// change is made from prev without reading the table again (at 5,000 rules
// the read, which walks every set and rule, took a one-rule change 25 ms
// of its last steps). The table was read, fingerprint and chains, before
// it became prev; should anyone have changed it since, the patch fails
// whole, as it deletes prev's fingerprint, and run replaces the table as
// Install would.
func (t *Table) PrepareFrom(ctx context.Context, prev, next *guard.Ruleset) (run func(context.Context) (bool, error), err error) {
	live := ""
	if prev != nil {
		live = prev.Hash()
	}
	return t.prepare(ctx, live, prev, next)
}

// prepare makes the change from prev to next of a table whose fingerprint
// is live, and returns what sends it (see PrepareInstall).
func (t *Table) prepare(ctx context.Context, live string, prev, next *guard.Ruleset) (run func(context.Context) (bool, error), err error) {
	nft, err := t.iface()
	if err != nil {
		return nil, err
	}
	r := trace.StartRegion(ctx, "nft-fill")
	tx := nft.NewTransaction()
	filled, patch := guard.Fill(tx, live, prev, next)
	// A patch is waited for until its commit is seen; a replacement, which
	// sends every element (and so as many notifications), until nft's exit.
	fp := ""
	if patch {
		fp = guard.FingerprintSet + guard.Current(next).Hash()
	}
	r.End()
	if filled {
		// Its nft, started while the caller does what comes before it.
		t.mu.Lock()
		t.prestart()
		t.mu.Unlock()
	}
	return func(ctx context.Context) (bool, error) {
		if !filled {
			return false, nil
		}
		err := t.in(func() error {
			defer trace.StartRegion(ctx, "nft-run").End()
			return t.run(ctx, nft, tx, fp)
		})
		if err != nil && t.plainNft(err) {
			return t.Install(ctx, prev, next)
		}
		if err != nil && patch && ctx.Err() == nil {
			// Changed since it was read (or the patch failed): as
			// Install would now.
			return t.Install(ctx, nil, next)
		}
		if err != nil {
			return false, fmt.Errorf("netfilter: updating table inet %s: %w", guard.Table, err)
		}
		return true, nil
	}, nil
}

// run sends tx. To the kernel's table it goes as its text with the
// elements of each set joined into few commands (guard.BatchElements):
// nft then takes half the memory and time for a large table. An error
// is nft's message, as knftables gives it.
//
// fp, when not "", is the fingerprint set the transaction adds: run then
// returns once the kernel says it is committed (see commit.go).
func (t *Table) run(ctx context.Context, nft knftables.Interface, tx *knftables.Transaction, fp string) error {
	if !t.kernel {
		return nft.Run(ctx, tx) // a knftables.Fake's table
	}
	script := tx.String()
	if _, msg, ok := strings.Cut(script, "# ERROR: "); ok {
		return errors.New(strings.TrimSpace(msg)) // knftables' own
	}
	t.finishPending()
	var w *commitWatch
	if fp != "" {
		w = watchCommit(fp)
	}
	defer w.close()
	p := t.takeSpare()
	if p == nil {
		var err error
		if p, err = startNft(); err != nil { // run is in the namespace
			return err
		}
	}
	go func() {
		io.WriteString(p.stdin, guard.BatchElements(script))
		p.stdin.Close()
	}()
	exited, stderr, cmd := p.exited, p.stderr, p.cmd
	var in chan struct{}
	if w != nil {
		in = w.in
	}
	select {
	case <-in:
		// Committed: nft is left to finish (see commit.go).
		t.mu.Lock()
		t.pending = exited
		t.mu.Unlock()
		return nil
	case err := <-exited:
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return errors.New(msg)
			}
			return err
		}
		return nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		return ctx.Err()
	}
}

// finishPending waits for the nft of the last transaction, which may
// still be finishing after its commit (see commit.go).
func (t *Table) finishPending() {
	t.mu.Lock()
	p := t.pending
	t.pending = nil
	t.mu.Unlock()
	if p != nil {
		<-p
	}
}

// plainNft, after nft refused a transaction, tells whether it was for a
// comment on an object (an nft older than 0.9.7) the first time: then
// transactions are made from now on by knftables.New's interface, which
// checks what nft takes, and the caller makes this one again.
//
// A failure whose message merely shows a comment (nft repeats the command
// it refused, and elements carry their rule's counter name as one) is
// told apart by asking nft to check a table with a comment and nothing
// else: only when that is refused too does the table go plain.
func (t *Table) plainNft(err error) bool {
	t.mu.Lock()
	plain := t.plain
	t.mu.Unlock()
	if !t.kernel || plain || !strings.Contains(err.Error(), "comment") {
		return false
	}
	if t.in(checkComments) == nil {
		return false // nft takes comments: the failure was another
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.plain {
		return false
	}
	t.plain, t.ready, t.nft = true, nil, nil
	return true
}

// checkComments asks nft whether it takes a comment on a table (as
// knftables.New does), without changing anything.
func checkComments() error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return noNft(err)
	}
	cmd := exec.Command(path, "--check", "-f", "-")
	cmd.Stdin = strings.NewReader("add table inet " + guard.Table + "-check { comment \"check\" ; }\n")
	return cmd.Run()
}

// noTable says an error means there is no guard table (yet).
// google/nftables does not wrap the errno of a missing table, so its text
// is what tells.
func noTable(err error) bool {
	return knftables.IsNotFound(err) || errors.Is(err, unix.ENOENT) || strings.HasSuffix(err.Error(), unix.ENOENT.Error())
}

// Counters returns, per rule counter name (guard.Rule.Counter), the
// clear-text packets the guard dropped for the rule: the sum of the
// counters of the rule's elements in the table's d- sets. nil when there
// is no guard table.
func (t *Table) Counters(ctx context.Context) (map[string]uint64, error) {
	var out map[string]uint64
	err := t.in(func() error {
		// Over netlink (the kernel's table): no nft process and no JSON
		// for each --watch refresh.
		names, conn, found, err := t.sets(ctx)
		if err != nil || names == nil {
			return err
		}
		out = map[string]uint64{}
		for i, name := range names {
			if !strings.HasPrefix(name, "d-") {
				continue
			}
			var set *nftables.Set
			if conn != nil {
				set = found[i]
			}
			if err := t.addCounts(ctx, conn, set, name, out); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netfilter: reading counters of table inet %s: %w", guard.Table, err)
	}
	return out, nil
}

// addCounts adds the element counters of one drop set to out, by the
// element's comment (its rule's counter name); elements without a comment
// are not swanmgr's. A fake table (conn nil) has elements but no counters.
func (t *Table) addCounts(ctx context.Context, conn *nftables.Conn, s *nftables.Set, set string, out map[string]uint64) error {
	if conn == nil {
		els, err := t.nft.ListElements(ctx, "set", set)
		if err != nil {
			return err
		}
		for _, e := range els {
			if e.Comment != nil && *e.Comment != "" {
				out[*e.Comment] += 0
			}
		}
		return nil
	}
	els, err := conn.GetSetElements(s)
	if err != nil {
		return err
	}
	for _, e := range els {
		if e.Comment == "" {
			continue
		}
		var n uint64
		if e.Counter != nil {
			n = e.Counter.Packets
		}
		out[e.Comment] += n
	}
	return nil
}

// Totals are the guard table's two named counters, in packets:
// guard.TrafficCounter (IPsec's own packets the table let through) and
// guard.DroppedCounter (every packet it dropped).
type Totals struct {
	Traffic, Dropped uint64
}

// ErrNoTotals says the live table has no totals: there is none, or it
// was installed before they were (a table of guard Format 3).
var ErrNoTotals = errors.New("no totals in the table")

// Totals reads the table's totals: one netlink dump of its named
// counters, however many elements the table has (Counters reads them
// all).
func (t *Table) Totals(ctx context.Context) (Totals, error) {
	var out Totals
	var traffic, dropped bool
	add := func(name string, packets uint64) {
		switch name {
		case guard.TrafficCounter:
			out.Traffic, traffic = packets, true
		case guard.DroppedCounter:
			out.Dropped, dropped = packets, true
		}
	}
	err := t.in(func() error {
		if !t.kernel {
			cs, err := t.nft.ListCounters(ctx)
			if err != nil {
				return err
			}
			for _, c := range cs {
				var n uint64
				if c.Packets != nil {
					n = *c.Packets
				}
				add(c.Name, n)
			}
			return nil
		}
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		objs, err := conn.GetObj(&nftables.CounterObj{Table: &nftables.Table{Name: guard.Table, Family: nftables.TableFamilyINet}})
		if err != nil {
			return err
		}
		for _, o := range objs {
			if c, ok := o.(*nftables.CounterObj); ok {
				add(c.Name, c.Packets)
			}
		}
		return nil
	})
	if err != nil && noTable(err) {
		err = ErrNoTotals
	}
	if err == nil && !(traffic && dropped) {
		err = ErrNoTotals
	}
	if err != nil {
		return Totals{}, fmt.Errorf("netfilter: reading the totals of table inet %s: %w", guard.Table, err)
	}
	return out, nil
}
