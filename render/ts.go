package render

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// TS is a traffic selector: an address range with a protocol and a port
// range, as swanctl writes it ("dynamic[tcp/6667]", "10.0.0.0/24") and as
// charon reports it in list-sas ("172.31.67.244/32[tcp/ircd]").
type TS struct {
	Dynamic bool         // "dynamic": the IKE address, filled in by Resolve
	Prefix  netip.Prefix // when not Dynamic
	Proto   int          // 0 = any
	PortLo  int          // 0..65535
	PortHi  int
}

//go:generate sh services.sh

var protoByName = map[string]int{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "ipv6-icmp": 58, "sctp": 132}

// ParseTS parses a selector. Port names (charon prints the names of its
// host's /etc/services, e.g. "ircd" for 6667) are read from a built-in copy
// of Debian's table (servicePorts), never from this host's: the same
// selector parses the same everywhere, with or without netbase.
func ParseTS(s string) (TS, error) {
	t := TS{PortLo: 0, PortHi: 65535}
	addr, rest, hasRest := strings.Cut(s, "[")
	switch {
	case addr == "dynamic":
		t.Dynamic = true
	case strings.Contains(addr, "/"):
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return t, fmt.Errorf("traffic selector %q: %w", s, err)
		}
		t.Prefix = p.Masked()
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return t, fmt.Errorf("traffic selector %q: %w", s, err)
		}
		t.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if !hasRest {
		return t, nil
	}
	rest = strings.TrimSuffix(rest, "]")
	proto, port, hasPort := strings.Cut(rest, "/")
	switch {
	case proto == "" || proto == "%any" || proto == "0":
	case protoByName[proto] != 0:
		t.Proto = protoByName[proto]
	default:
		n, err := strconv.Atoi(proto)
		if err != nil {
			return t, fmt.Errorf("traffic selector %q: unknown protocol %q", s, proto)
		}
		t.Proto = n
	}
	if !hasPort || port == "%any" || port == "" {
		return t, nil
	}
	// A service name may itself hold a dash ("zabbix-agent"): try the
	// whole as one port before reading a range.
	if n, err := portNumber(port, t.Proto); err == nil {
		t.PortLo, t.PortHi = n, n
		return t, nil
	}
	lo, hi, isRange := strings.Cut(port, "-")
	var err error
	if t.PortLo, err = portNumber(lo, t.Proto); err != nil {
		return t, fmt.Errorf("traffic selector %q: unknown port %q", s, port)
	}
	t.PortHi = t.PortLo
	if isRange {
		if t.PortHi, err = portNumber(hi, t.Proto); err != nil {
			return t, fmt.Errorf("traffic selector %q: unknown port %q", s, port)
		}
	}
	return t, nil
}

func portNumber(s string, proto int) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	network := "tcp" // what charon's getservbyport falls back on too
	switch proto {
	case 17:
		network = "udp"
	case 132:
		network = "sctp"
	}
	if n, ok := servicePorts[network+"/"+s]; ok {
		return int(n), nil
	}
	if n, ok := servicePorts["tcp/"+s]; ok {
		return int(n), nil
	}
	return 0, fmt.Errorf("unknown port %q", s)
}

// ProtoName is an IP protocol as charon writes it in a selector: its
// name for the common ones ("tcp", "ipv6-icmp"), else the number.
func ProtoName(n int) string {
	switch n {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(n)
}

// Resolve fills in "dynamic" with the IKE address.
func (t TS) Resolve(host netip.Addr) TS {
	if t.Dynamic && host.IsValid() {
		t.Dynamic = false
		t.Prefix = netip.PrefixFrom(host.Unmap(), host.Unmap().BitLen())
	}
	return t
}

// String writes the selector in charon's form with port numbers.
func (t TS) String() string {
	s := "dynamic"
	if !t.Dynamic {
		s = t.Prefix.String()
	}
	if t.Proto == 0 && t.PortLo == 0 && t.PortHi == 65535 {
		return s
	}
	proto := ProtoName(t.Proto)
	if t.Proto == 0 {
		proto = "%any"
	}
	switch {
	case t.PortLo == 0 && t.PortHi == 65535:
		return s + "[" + proto + "]"
	case t.PortLo == t.PortHi:
		return fmt.Sprintf("%s[%s/%d]", s, proto, t.PortLo)
	}
	return fmt.Sprintf("%s[%s/%d-%d]", s, proto, t.PortLo, t.PortHi)
}

// Covers reports whether u lies within t (u is t or a narrowing of it).
func (t TS) Covers(u TS) bool {
	if t.Dynamic || u.Dynamic {
		return false
	}
	if !t.Prefix.Contains(u.Prefix.Addr()) || t.Prefix.Bits() > u.Prefix.Bits() {
		return false
	}
	if t.Proto != 0 && t.Proto != u.Proto {
		return false
	}
	return t.PortLo <= u.PortLo && u.PortHi <= t.PortHi
}

// Equal reports whether two resolved selectors are the same.
func (t TS) Equal(u TS) bool { return t.Covers(u) && u.Covers(t) }

// Intersect is what charon narrows two resolved selectors to; false when
// they have nothing in common.
func (t TS) Intersect(u TS) (TS, bool) {
	if !t.Prefix.Overlaps(u.Prefix) {
		return TS{}, false
	}
	out := t
	if u.Prefix.Bits() > t.Prefix.Bits() {
		out.Prefix = u.Prefix
	}
	switch {
	case t.Proto == 0:
		out.Proto = u.Proto
	case u.Proto != 0 && u.Proto != t.Proto:
		return TS{}, false
	}
	out.PortLo, out.PortHi = max(t.PortLo, u.PortLo), min(t.PortHi, u.PortHi)
	if out.PortLo > out.PortHi {
		return TS{}, false
	}
	return out, true
}
