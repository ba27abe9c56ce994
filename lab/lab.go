package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
)

// Backend selects how each charon installs IPsec SAs and policies.
type Backend string

const (
	// Libipsec is strongSwan's userspace IPsec (kernel-libipsec plus
	// kernel-netlink for routes): the only way to get ESP SAs on a kernel
	// without ESP. Tunnel mode only; shunts are ignored. The default.
	Libipsec Backend = "libipsec"
	// Kernel loads kernel-netlink alone: XFRM policies (pass/drop shunts)
	// are installed, ESP SAs fail on a kernel without ESP. For permit/block
	// tests.
	Kernel Backend = "kernel"
)

const (
	// DefaultDir is the lab folder when Options.Dir is empty. It is not
	// under /run because each charon gets a private tmpfs on /run (see the
	// package documentation) and must still see its folder.
	DefaultDir = "/var/lib/swanmgr/lab"
	// DefaultPrefix starts the name of every namespace the lab creates.
	DefaultPrefix = "swl"
	// CharonPath is the charon binary of Debian's strongswan-charon.
	CharonPath = "/usr/lib/ipsec/charon"
	// Iface is the name of each host's interface to the switch.
	Iface = "eth0"

	stateFile  = "lab.json"
	bridgeName = "br0"
	switchName = "switch"
	portPrefix = "to-" // switch-side veth ends are "to-<host>"
	netnsDir   = "/run/netns"
)

// segment is the lab's one network; every host address is in it.
var segment = netip.MustParsePrefix("172.16.0.0/12")

// The hosts of the KB301284 example. Other host names get addresses from
// otherNet by position in Options.Hosts.
var (
	knownAddrs = map[string]netip.Addr{
		"alice": netip.MustParseAddr("172.16.98.231"),
		"bob":   netip.MustParseAddr("172.31.67.244"),
		"eve":   netip.MustParseAddr("172.20.0.5"),
	}
	otherNet = netip.MustParseAddr("172.24.0.10")
)

// Errors callers branch on.
var (
	// ErrAlreadyUp: Up found a lab (its lab.json) in the folder.
	ErrAlreadyUp = errors.New("lab: already up")
	// ErrNotUp: Open found no lab.json in the folder.
	ErrNotUp = errors.New("lab: not up")
)

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,19}$`)
	// The switch-side interface is portPrefix+name: at most 15 bytes.
	hostRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)
)

// Options describe the lab to build. The zero value is a valid lab:
// alice, bob and eve with the libipsec backend in DefaultDir.
type Options struct {
	// Dir is the lab folder holding lab.json and one folder per host
	// (strongswan.conf, charon.vici, charon.log, charon.stderr).
	// "" = DefaultDir. It must not be under /run.
	Dir string
	// Backend: "" = Libipsec.
	Backend Backend
	// Prefix names the namespaces: <prefix>-<host> and <prefix>-switch.
	// Lower-case letters and digits, at most 20. Tests pass a random one so
	// that parallel labs do not collide. "" = DefaultPrefix.
	Prefix string
	// Hosts to create, in order; nil = alice, bob, eve. alice, bob and eve
	// get their KB301284 addresses, other names 172.24.0.10, .11, ... by
	// position. Names: lower-case letters and digits, at most 12, not
	// "switch".
	Hosts []string
	// Verbose raises charon's cfg log level to 2: every loaded connection
	// is dumped and proposal/selector matching is logged in detail. It
	// doubles the time of load-conn (1,000 connections: 0.45 s -> 0.85 s)
	// and logs about 4.5 KB per loaded connection. The default logs every
	// subsystem at level 1 and ike at 2, which has the lines that tell
	// failures apart.
	Verbose bool
	// Topology: "" or TopologyFlat for one segment; TopologyNAT puts the
	// first host behind a masquerading router (see TopologyNAT).
	Topology Topology
	// IPv6 gives every host an IPv6 address too (Host.Addr6, in
	// Segment6: fd00:16::/64 with the IPv4 address in the last 32 bits)
	// and leaves IPv6 on in the host namespaces (it is off otherwise, to
	// keep captures quiet). Flat topology only.
	IPv6 bool
}

// Segment6 is the lab's IPv6 segment with Options.IPv6.
var Segment6 = netip.MustParsePrefix("fd00:16::/64")

// addr6 is a host's IPv6 address: Segment6 with its IPv4 address in the
// last 32 bits.
func addr6(v4 netip.Addr) netip.Addr {
	b := Segment6.Addr().As16()
	v := v4.As4()
	copy(b[12:], v[:])
	return netip.AddrFrom16(b)
}

// Topology is how the lab's hosts are connected.
type Topology string

const (
	// TopologyFlat: every host on one segment (172.16.0.0/12) through the
	// switch namespace. The default.
	TopologyFlat Topology = "flat"
	// TopologyNAT: the first host (alice: 192.168.98.231/24) sits on a
	// private segment of its own behind a router namespace
	// (<prefix>-router: 192.168.98.1 inside, 172.16.0.1/12 outside, on the
	// switch) that forwards and masquerades it with nftables; every other
	// host is on the outside segment at its usual address. Outside hosts
	// see the first host's traffic coming from 172.16.0.1 and have no route
	// to 192.168.98.0/24.
	TopologyNAT Topology = "nat"
)

// NAT topology addresses.
var (
	natInside       = netip.MustParsePrefix("192.168.98.0/24")
	natRouterInside = netip.MustParseAddr("192.168.98.1")
	natRouterWAN    = netip.MustParseAddr("172.16.0.1")
	natAliceAddr    = netip.MustParseAddr("192.168.98.231")
	natOtherAddr    = netip.MustParseAddr("192.168.98.10")
)

const (
	routerName = "router"
	routerWAN  = "wan0" // the router's interface on the switch
	routerLAN  = "lan0" // the router's interface to the host behind it
)

// Router is the NAT topology's router namespace.
type Router struct {
	Netns string
	// Inside is its address on the private segment (the NATed host's
	// gateway), Outside its address on the switch: what outside hosts see
	// as the NATed host's address.
	Inside, Outside netip.Addr
	// Private is the NATed host's segment.
	Private netip.Prefix
}

// natRuleset masquerades everything the router sends out of its outside
// interface: the private host's IKE (UDP 500 → 4500) and everything else
// leave with the router's address.
const natRuleset = `table ip swanmgr-nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "` + routerWAN + `" masquerade
	}
}
`

// Lab is a running lab, from Up or Open.
type Lab struct {
	Dir     string
	Backend Backend
	Prefix  string
	// Switch is the namespace holding the bridge between the hosts.
	Switch string
	// Segment is the one network all hosts are on: 172.16.0.0/12.
	Segment netip.Prefix
	Hosts   []*Host
	// Topology is TopologyFlat or TopologyNAT; Router is set for the
	// latter, and Hosts[0] is then the host behind it.
	Topology Topology
	Router   *Router

	verbose bool     // Options.Verbose, for Up
	madeDir string   // the topmost folder Up created for Dir, "" if Dir existed
	netns   []string // namespaces Up created, in order
	folders []string // host folders Up created

	mu sync.Mutex // serializes writes of lab.json and reads of Host.Pid/start
}

// state is lab.json.
type state struct {
	Dir     string      `json:"dir"`
	Backend Backend     `json:"backend"`
	Prefix  string      `json:"prefix"`
	Switch  string      `json:"switch"`
	Hosts   []hostState `json:"hosts"`
	// Topology and Router: "" and nil for a flat lab.
	Topology Topology `json:"topology,omitempty"`
	Router   *Router  `json:"router,omitempty"`
	// What Up created, and so what Down removes.
	MadeDir    string   `json:"made_dir,omitempty"`
	Namespaces []string `json:"namespaces"`
	Folders    []string `json:"folders"`
}

type hostState struct {
	Name   string     `json:"name"`
	Netns  string     `json:"netns"`
	Addr   netip.Addr `json:"addr"`
	Addr6  netip.Addr `json:"addr6,omitzero"`
	Iface  string     `json:"iface"`
	Socket string     `json:"socket"`
	Conf   string     `json:"conf"`
	Log    string     `json:"log"`
	Pid    int        `json:"pid,omitempty"`
	// Start is the process start time (clock ticks after boot, field 22 of
	// /proc/PID/stat): with Pid it tells our charon from a reused pid.
	Start uint64 `json:"start,omitempty"`
}

// Check reports the first missing prerequisite of a lab: root, charon,
// swanctl, ip, unshare, and /dev/net/tun for libipsec.
func Check(b Backend) error {
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root (network namespaces)")
	}
	if _, err := os.Stat(CharonPath); err != nil {
		return fmt.Errorf("lab: charon missing (install strongswan-charon): %w", err)
	}
	for _, bin := range []string{"ip", "unshare", "swanctl", "sh", "mount"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if b == "" || b == Libipsec {
		if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"); err != nil {
			return fmt.Errorf("lab: kernel-libipsec plugin missing (install libcharon-extra-plugins): %w", err)
		}
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			return fmt.Errorf("lab: libipsec needs a TUN device: %w", err)
		}
	}
	return nil
}

// Up builds a lab: namespaces, switch, addresses, one charon per host, and
// lab.json. It fails with ErrAlreadyUp if the folder holds a lab, and if a
// namespace name is taken. On any failure it tears down what it built.
func Up(ctx context.Context, o Options) (*Lab, error) {
	l, err := newLab(o)
	if err != nil {
		return nil, err
	}
	if err := Check(l.Backend); err != nil {
		return nil, err
	}
	if l.Router != nil {
		if _, err := exec.LookPath("nft"); err != nil {
			return nil, fmt.Errorf("lab: the nat topology needs nft (install nftables): %w", err)
		}
	}
	if err := l.claimDir(); err != nil {
		return nil, err
	}
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(err, l.Down())
	}
	return l, nil
}

// newLab applies defaults to o and validates it; no side effects.
func newLab(o Options) (*Lab, error) {
	l := &Lab{Dir: o.Dir, Backend: o.Backend, Prefix: o.Prefix, Segment: segment, verbose: o.Verbose}
	if l.Dir == "" {
		l.Dir = DefaultDir
	}
	dir, err := filepath.Abs(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: dir: %w", err)
	}
	l.Dir = dir
	if underRun(dir) {
		return nil, fmt.Errorf("lab: dir %s is under /run, which each charon replaces with a private tmpfs", dir)
	}
	switch l.Backend {
	case "":
		l.Backend = Libipsec
	case Libipsec, Kernel:
	default:
		return nil, fmt.Errorf("lab: unknown backend %q (want %q or %q)", l.Backend, Libipsec, Kernel)
	}
	if l.Prefix == "" {
		l.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(l.Prefix) {
		return nil, fmt.Errorf("lab: prefix %q: want lower-case letters and digits, at most 20", l.Prefix)
	}
	l.Switch = l.Prefix + "-" + switchName
	switch o.Topology {
	case "", TopologyFlat:
		l.Topology = TopologyFlat
	case TopologyNAT:
		l.Topology = TopologyNAT
		l.Router = &Router{Netns: l.Prefix + "-" + routerName, Inside: natRouterInside, Outside: natRouterWAN, Private: natInside}
	default:
		return nil, fmt.Errorf("lab: unknown topology %q (want %q or %q)", o.Topology, TopologyFlat, TopologyNAT)
	}
	if o.IPv6 && l.Router != nil {
		return nil, errors.New("lab: IPv6 is available in the flat topology only")
	}
	names := o.Hosts
	if names == nil {
		names = []string{"alice", "bob", "eve"}
	}
	if len(names) == 0 {
		return nil, errors.New("lab: no hosts")
	}
	seen := map[string]bool{}
	next := otherNet
	for _, n := range names {
		if !hostRE.MatchString(n) || n == switchName || n == routerName {
			return nil, fmt.Errorf("lab: host name %q: want lower-case letters and digits, at most 12, not %q or %q", n, switchName, routerName)
		}
		if seen[n] {
			return nil, fmt.Errorf("lab: host %q twice", n)
		}
		seen[n] = true
		addr, ok := knownAddrs[n]
		if !ok {
			addr, next = next, next.Next()
		}
		if l.Router != nil && len(l.Hosts) == 0 {
			// The first host is the one behind the router.
			addr = natOtherAddr
			if n == "alice" {
				addr = natAliceAddr
			}
		}
		hd := filepath.Join(l.Dir, n)
		var a6 netip.Addr
		if o.IPv6 {
			a6 = addr6(addr)
		}
		h := &Host{
			Addr6:  a6,
			Name:   n,
			Netns:  l.Prefix + "-" + n,
			Addr:   addr,
			Iface:  Iface,
			Socket: filepath.Join(hd, "charon.vici"),
			Conf:   filepath.Join(hd, "strongswan.conf"),
			Log:    filepath.Join(hd, "charon.log"),
			lab:    l,
		}
		// sun_path holds 108 bytes including the terminating NUL.
		if len(h.Socket) > 107 {
			return nil, fmt.Errorf("lab: socket path %s longer than 107 bytes; use a shorter dir", h.Socket)
		}
		l.Hosts = append(l.Hosts, h)
	}
	return l, nil
}

func underRun(dir string) bool {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if real, err := filepath.EvalSymlinks(filepath.Dir(dir)); err == nil {
		dir = filepath.Join(real, filepath.Base(dir))
	}
	for _, r := range []string{"/run", "/var/run"} {
		if dir == r || strings.HasPrefix(dir, r+"/") {
			return true
		}
	}
	return false
}

// claimDir creates the lab folder and lab.json; creating lab.json with
// O_EXCL is what makes a second Up in the same folder fail.
func (l *Lab) claimDir() error {
	// Remember the topmost folder MkdirAll creates, so Down removes exactly
	// what Up added.
	made := ""
	for d := l.Dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = d
		if d == filepath.Dir(d) {
			break
		}
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(l.Dir, stateFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w in %s (run lab down first)", ErrAlreadyUp, l.Dir)
	}
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	f.Close()
	l.madeDir = made
	return l.save()
}

func (l *Lab) build(ctx context.Context) error {
	for _, ns := range l.namespaces() {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
			return fmt.Errorf("lab: namespace %s exists already; not touching it", ns)
		}
	}
	for _, h := range l.Hosts {
		if _, err := os.Stat(h.dir()); err == nil {
			return fmt.Errorf("lab: %s exists already; remove it or use another dir", h.dir())
		}
	}
	steps := [][]string{
		{"netns", "add", l.Switch},
		{"-n", l.Switch, "link", "add", bridgeName, "type", "bridge"},
		{"-n", l.Switch, "link", "set", bridgeName, "up"},
	}
	if r := l.Router; r != nil {
		steps = append(steps,
			[]string{"netns", "add", r.Netns},
			[]string{"-n", l.Switch, "link", "add", portPrefix + routerName, "type", "veth", "peer", "name", routerWAN, "netns", r.Netns},
			[]string{"-n", l.Switch, "link", "set", portPrefix + routerName, "master", bridgeName, "up"},
			[]string{"-n", r.Netns, "link", "set", "lo", "up"},
			[]string{"-n", r.Netns, "addr", "add", netip.PrefixFrom(r.Outside, l.Segment.Bits()).String(), "dev", routerWAN},
			[]string{"-n", r.Netns, "link", "set", routerWAN, "up"},
		)
	}
	for i, h := range l.Hosts {
		if l.Router != nil && i == 0 {
			r := l.Router
			steps = append(steps,
				[]string{"netns", "add", h.Netns},
				// A cable from the router straight to the host.
				[]string{"-n", r.Netns, "link", "add", routerLAN, "type", "veth", "peer", "name", h.Iface, "netns", h.Netns},
				[]string{"-n", r.Netns, "addr", "add", netip.PrefixFrom(r.Inside, r.Private.Bits()).String(), "dev", routerLAN},
				[]string{"-n", r.Netns, "link", "set", routerLAN, "up"},
				[]string{"-n", h.Netns, "link", "set", "lo", "up"},
				[]string{"-n", h.Netns, "addr", "add", netip.PrefixFrom(h.Addr, r.Private.Bits()).String(), "dev", h.Iface},
				[]string{"-n", h.Netns, "link", "set", h.Iface, "up"},
				[]string{"-n", h.Netns, "route", "add", "default", "via", r.Inside.String()},
			)
			continue
		}
		steps = append(steps,
			[]string{"netns", "add", h.Netns},
			// Created in the switch namespace with its peer moved straight
			// into the host's: nothing ever appears in the root namespace.
			[]string{"-n", l.Switch, "link", "add", portPrefix + h.Name, "type", "veth", "peer", "name", h.Iface, "netns", h.Netns},
			[]string{"-n", l.Switch, "link", "set", portPrefix + h.Name, "master", bridgeName, "up"},
			[]string{"-n", h.Netns, "link", "set", "lo", "up"},
			[]string{"-n", h.Netns, "addr", "add", netip.PrefixFrom(h.Addr, l.Segment.Bits()).String(), "dev", h.Iface},
		)
		if h.Addr6.IsValid() {
			// nodad: usable at once, not after duplicate address detection.
			steps = append(steps, []string{"-n", h.Netns, "addr", "add", netip.PrefixFrom(h.Addr6, Segment6.Bits()).String(), "dev", h.Iface, "nodad"})
		}
		steps = append(steps, []string{"-n", h.Netns, "link", "set", h.Iface, "up"})
	}
	v6 := map[string]bool{}
	for _, h := range l.Hosts {
		v6[h.Netns] = h.Addr6.IsValid()
	}
	for _, args := range steps {
		if err := ip(ctx, args...); err != nil {
			return err
		}
		if args[0] == "netns" {
			ns := args[2]
			l.netns = append(l.netns, ns)
			if err := l.save(); err != nil {
				return err
			}
			// Quiet IPv6 (router solicitations, MLD) keeps captures
			// readable; with Options.IPv6 the hosts keep it.
			if v6[ns] {
				continue
			}
			if err := inNetns(ns, func() error {
				return os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0)
			}); err != nil {
				return fmt.Errorf("lab: disable IPv6 in %s: %w", ns, err)
			}
		}
	}
	if r := l.Router; r != nil {
		if err := inNetns(r.Netns, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
		}); err != nil {
			return fmt.Errorf("lab: enable forwarding in %s: %w", r.Netns, err)
		}
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", r.Netns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(natRuleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: nft in %s: %w: %s", r.Netns, err, strings.TrimSpace(string(out)))
		}
	}
	for _, h := range l.Hosts {
		if err := os.Mkdir(h.dir(), 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		l.folders = append(l.folders, h.dir())
		if err := l.save(); err != nil {
			return err
		}
		conf := strongswanConf(l.Backend, h.Name, h.Socket, h.Log, l.verbose)
		if err := os.WriteFile(h.Conf, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	for _, h := range l.Hosts {
		if err := h.StartCharon(ctx); err != nil {
			return err
		}
	}
	return nil
}

// namespaces lists every namespace of the lab, hosts first.
func (l *Lab) namespaces() []string {
	var ns []string
	for _, h := range l.Hosts {
		ns = append(ns, h.Netns)
	}
	if l.Router != nil {
		ns = append(ns, l.Router.Netns)
	}
	return append(ns, l.Switch)
}

// Open reads the lab that Up wrote to dir ("" = DefaultDir), for
// `lab down` and `lab status` in another process. It fails with ErrNotUp
// if dir holds no lab.
func Open(dir string) (*Lab, error) {
	if dir == "" {
		dir = DefaultDir
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lab: dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in %s", ErrNotUp, stateFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, stateFile), err)
	}
	if s.Dir != dir {
		return nil, fmt.Errorf("lab: %s: written for dir %s, not %s", stateFile, s.Dir, dir)
	}
	l := &Lab{
		Dir: s.Dir, Backend: s.Backend, Prefix: s.Prefix, Switch: s.Switch, Segment: segment,
		Topology: s.Topology, Router: s.Router,
		madeDir: s.MadeDir, netns: s.Namespaces, folders: s.Folders,
	}
	if l.Topology == "" {
		l.Topology = TopologyFlat
	}
	for _, hs := range s.Hosts {
		l.Hosts = append(l.Hosts, &Host{
			Name: hs.Name, Netns: hs.Netns, Addr: hs.Addr, Addr6: hs.Addr6, Iface: hs.Iface,
			Socket: hs.Socket, Conf: hs.Conf, Log: hs.Log, Pid: hs.Pid,
			start: hs.Start, lab: l,
		})
	}
	return l, nil
}

// save rewrites lab.json atomically, if it exists: claimDir creates it.
func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := state{
		Dir: l.Dir, Backend: l.Backend, Prefix: l.Prefix, Switch: l.Switch,
		MadeDir: l.madeDir, Namespaces: l.netns, Folders: l.folders, Router: l.Router,
	}
	if l.Topology != TopologyFlat {
		s.Topology = l.Topology
	}
	for _, h := range l.Hosts {
		s.Hosts = append(s.Hosts, hostState{
			Name: h.Name, Netns: h.Netns, Addr: h.Addr, Addr6: h.Addr6, Iface: h.Iface,
			Socket: h.Socket, Conf: h.Conf, Log: h.Log, Pid: h.Pid, Start: h.start,
		})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	p := filepath.Join(l.Dir, stateFile)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		// Taken down, maybe by another process (lab down): nothing to update.
		return nil
	}
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Host returns the host with that name, nil if the lab has none.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Down stops every charon (by pid), deletes every namespace of the lab
// (which removes their interfaces) and the files Up wrote: each host's
// folder, lab.json, and Dir itself if Up created it. It keeps going past
// failures and returns them all; if any step failed it keeps lab.json so
// that Down can be run again. Down of a lab that is down does nothing.
func (l *Lab) Down() error {
	var errs []error
	for _, h := range l.Hosts {
		if err := h.StopCharon(); err != nil {
			errs = append(errs, err)
		}
	}
	// Hosts before the switch: the reverse of creation.
	for i := len(l.netns) - 1; i >= 0; i-- {
		ns := l.netns[i]
		if !netnsExists(ns) {
			continue
		}
		if err := ip(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, d := range l.folders {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	}
	for _, f := range []string{stateFile, stateFile + ".tmp"} {
		if err := os.Remove(filepath.Join(l.Dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	}
	if l.madeDir != "" {
		// Only folders Up created, and only if empty: a file someone else
		// put there stays, and so do its folders.
		for d := l.Dir; ; d = filepath.Dir(d) {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				// A parent folder that holds other things (swanmgr's
				// records, the demo's files) is theirs now: leave it.
				if d == l.Dir || !errors.Is(err, syscall.ENOTEMPTY) {
					errs = append(errs, fmt.Errorf("lab: %w", err))
				}
				break
			}
			if d == l.madeDir || d == filepath.Dir(d) {
				break
			}
		}
	}
	if len(errs) == 0 {
		l.netns, l.folders, l.madeDir = nil, nil, ""
	}
	return errors.Join(errs...)
}

// Status is what `lab status` shows.
type Status struct {
	Dir     string
	Backend Backend
	Switch  string
	// SwitchUp: the switch namespace exists.
	SwitchUp bool
	Hosts    []HostStatus
}

// HostStatus is the state of one host.
type HostStatus struct {
	Name   string
	Netns  string
	Addr   netip.Addr
	Socket string
	// NetnsUp: the host's namespace exists.
	NetnsUp bool
	// Pid is the recorded charon pid, 0 if none was started.
	Pid int
	// Running: Pid is alive and still the process the lab started.
	Running bool
	// Answers: the VICI socket accepts a connection.
	Answers bool
}

// OK reports whether every namespace exists and every charon runs and
// answers.
func (s Status) OK() bool {
	if !s.SwitchUp {
		return false
	}
	for _, h := range s.Hosts {
		if !h.NetnsUp || !h.Running || !h.Answers {
			return false
		}
	}
	return true
}

// Status looks at the namespaces, processes and sockets; it changes
// nothing.
func (l *Lab) Status() Status {
	s := Status{Dir: l.Dir, Backend: l.Backend, Switch: l.Switch, SwitchUp: netnsExists(l.Switch)}
	for _, h := range l.Hosts {
		pid, start := h.proc()
		s.Hosts = append(s.Hosts, HostStatus{
			Name:    h.Name,
			Netns:   h.Netns,
			Addr:    h.Addr,
			Socket:  h.Socket,
			NetnsUp: netnsExists(h.Netns),
			Pid:     pid,
			Running: pid != 0 && alive(pid, start),
			Answers: socketAnswers(h.Socket),
		})
	}
	return s
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// ip runs ip(8) with args; the error carries its output.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
