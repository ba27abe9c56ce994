// Package guard derives swanmgr's nftables guard from an assigned policy:
// the firewall rules that make "Negotiate security — do not communicate
// with computers that do not support IPSec" hold when an SA, or charon
// itself, is down.
//
// For every filter of a negotiate rule the guard drops clear-text packets
// that match it, in both directions (filters are mirrored), unless IPsec
// protects them; for every filter of a block rule it drops matching
// packets, always. Permit rules, and negotiate or block rules whose filter
// action says guard = false, are holes: the most specific filter wins, as
// in Windows, whatever its action. Traffic that no rule covers is not
// touched, nor is IKE (UDP 500 and 4500), ESP and AH themselves, loopback
// and IPv6 neighbour discovery.
//
// "Protected" depends on the backend: with the kernel's XFRM, packets
// that leave through an XFRM transform (rt ipsec exists) or arrived through
// one (meta ipsec exists); with charon's userspace libipsec, packets that
// leave or arrive through its TUN device (ipsec0). Entries have charon's
// directions: out, from this side to the peer's, and in. A packet sent is
// looked up among the out entries, one received among the in entries, and
// one forwarded among both, in two passes that must both let it through,
// as the kernel's out and fwd policies would. A rule bound to an interface
// (its network) is guarded on that interface only.
//
// The rules live in one table, inet swanmgr; nothing else is read or
// changed. Matching costs one set lookup per filter shape (the prefix
// lengths, whether protocol and ports are restricted, the direction and
// the interface), however many
// rules: each shape is a concatenated set keyed by what the filter
// restricts (addresses, protocol, ports; an interval set only for
// prefixes), with a verdict map and a set of drop entries beside it, and
// filters of one shape never partly overlap, so most-specific-first
// ordering is the order of the shapes. Each drop entry counts the
// clear-text packets dropped for it and carries its rule's counter name
// as its comment; a guarded rule's drops are the sum of its entries. An
// empty set named fp-<hash> tells which ruleset the live table is.
//
// The package is pure: Derive computes a Ruleset from the model, Merge
// the ruleset that is at least as strict as two others (what an apply
// installs while it changes connections), and Fill the
// sigs.k8s.io/knftables transaction that turns the live table into a
// ruleset — a patch of what changed when the live table is the one
// expected, otherwise one atomic replacement. Running it is the
// netfilter package's job.
package guard
