// Package netfilter is the thin adapter between swanmgr and the kernel's
// firewall: it runs the guard's transactions (package guard) against
// table inet swanmgr, reads the table's fingerprint and its counters, and
// nothing else. It never lists, changes or deletes another table.
//
// It drives the nft command through sigs.k8s.io/knftables (the library
// kube-proxy's nftables mode uses): every change is one nft transaction,
// applied atomically by the kernel, and the same library offers a fake
// that the guard's unit tests run against. nft must be installed
// (Debian's nftables package); without it Open fails with ErrNoNftables,
// saying what to install. Reads (the fingerprint, the counters) go over
// netlink with github.com/google/nftables and start no process. A change
// is made with a knftables.Fake and sent as its text to an nft -f -
// started ahead of it, which waits on stdin until then (spare.go);
// knftables' own set-up, which runs nft twice, is used only when nft
// refuses a comment on an object (an nft older than 0.9.7). A patch is
// taken as done when the kernel announces its commit to the nftables
// netlink group (github.com/mdlayher/netlink), not when nft exits, which
// after a delete waits one RCU grace period more; the next change and
// Close wait for that nft.
//
// The guard belongs in the network namespace where charon runs, which is
// where its SAs carry traffic: CharonNetns finds it from the VICI socket
// (the peer credentials of the listening charon), and every nft command
// and netlink socket is made in that namespace. On a normal host that is the namespace swanmgr
// runs in; in the lab it is the host's namespace.
package netfilter
