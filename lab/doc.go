// Package lab builds a throw-away IPsec test network on one Linux machine:
// the topology of Microsoft's KB301284 example (Alice 172.16.98.231,
// Bob 172.31.67.244, and a third host Eve 172.20.0.5 on 172.16.0.0/12),
// one network namespace per host, a bridge in a dedicated "switch"
// namespace between them, and one strongSwan charon daemon per host with
// its own strongswan.conf, VICI socket and log file under one lab folder.
//
// It serves both `swanmgr lab up|down|status` and the end-to-end tests:
//
//	l, err := lab.Up(ctx, lab.Options{Dir: dir, Prefix: "swlt1a2b3c"})
//	...
//	defer l.Down()
//	alice, bob := l.Host("alice"), l.Host("bob")
//	ln, _ := bob.Listen("tcp", "172.31.67.244:6667")     // socket inside bob's namespace
//	c, _ := alice.Dial(ctx, "tcp", "172.31.67.244:6667") // socket inside alice's namespace
//	out, _ := alice.Swanctl(ctx, "--list-sas").CombinedOutput()
//
// A test process stays in the root namespace: VICI sockets are unix sockets
// in the lab folder (reachable from any namespace), and Listen/Dial open
// their sockets on a thread that has switched into the host's namespace.
//
// # Topologies and certificates
//
// [TopologyNAT] (Options.Topology, `swanmgr lab up --topology nat`) puts
// the first host on a private segment (alice 192.168.98.231/24) behind a
// router namespace that forwards and masquerades it with nftables as
// 172.16.0.1 on the switch; the other hosts stay on the flat segment and
// have no route to the private one. docs/nat.md shows what it proves.
//
// [IssueCerts] (`swanmgr lab certs --out DIR`) issues a throwaway lab CA
// and an ECDSA P-256 certificate per host with the host's address and
// name as subjectAltNames, for certificate authentication in the lab.
//
// # The machine this runs on
//
// The kernels of the build machines have XFRM but no ESP, so by default
// every charon uses strongSwan's userspace IPsec ([Libipsec]: ESP in UDP
// through a TUN device, tunnel mode only, no acquires from trap policies).
// [Kernel] loads kernel-netlink alone, which installs XFRM policies (pass
// and drop shunts work) but cannot install ESP SAs. FINDINGS.md in this
// folder records what was measured.
//
// charon's pid file path (/var/run/charon.pid) is compiled in, so each
// charon runs in a private mount namespace with its own tmpfs on /run; for
// that reason the lab folder must not be under /run.
//
// # What it must not do
//
//   - Touch the root network namespace: no interface, bridge, route, rule or
//     address is created there, and no test traffic leaves the lab's
//     namespaces. Every interface is created inside a lab namespace.
//   - Touch namespaces, processes or files it did not create: it only
//     deletes the namespaces recorded in its state file (lab.json), ends
//     processes by the pid it started (checking the pid still names the same
//     process, never by name: no pkill/killall), and only removes the files
//     and folders it wrote.
//   - Guess: if a lab is already up in the folder, or a namespace name is
//     taken, Up fails instead of reusing or replacing it.
package lab
