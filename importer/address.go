package importer

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// oneOfOrNumber reads protocol: ANY, ICMP, TCP, UDP, RAW or 0-255.
func (p *params) oneOfOrNumber(k string) (any, error) {
	v, ok := p.values[k]
	if !ok {
		return nil, nil
	}
	switch l := strings.ToLower(v); l {
	case "any":
		return nil, nil
	case "icmp", "tcp", "udp", "raw":
		return l, nil
	}
	num, err := strconv.Atoi(v)
	if err != nil || num < 0 || num > 255 {
		return nil, p.errf("%s=%q: want ANY, ICMP, TCP, UDP, RAW or a protocol number 0-255", k, v)
	}
	switch num {
	case 0:
		return nil, nil
	case 1:
		return "icmp", nil
	case 6:
		return "tcp", nil
	case 17:
		return "udp", nil
	}
	return num, nil
}

var dnsName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)

// address maps a netsh address and mask to a filter's source or
// destination. drop says why the filter cannot be carried over.
func address(v, mask string, hasMask bool) (out, drop, note string, err error) {
	l := strings.ToLower(strings.TrimSpace(v))
	switch l {
	case "me":
		return "me", "", maskIgnored(mask, hasMask, "0.0.0.0", "255.255.255.255", "32", "0"), nil
	case "any", "0.0.0.0":
		if l == "0.0.0.0" && hasMask && mask != "0.0.0.0" && mask != "0" {
			break
		}
		return "any", "", maskIgnored(mask, hasMask, "0.0.0.0", "0"), nil
	case "wins", "dns", "dhcp", "gateway":
		return "", "the special server " + strings.ToUpper(l) + " is whatever Windows' network settings named at the time; swanmgr needs its address: filter left out (add it with its address)", "", nil
	}
	if lo, hi, ok := strings.Cut(l, "-"); ok {
		if _, e1 := netip.ParseAddr(lo); e1 == nil {
			if _, e2 := netip.ParseAddr(hi); e2 == nil {
				return "", "an address range has no traffic selector of its own in swanmgr's format (a subnet does): filter left out (write it as subnets)", "", nil
			}
		}
	}
	ip, perr := netip.ParseAddr(l)
	if perr != nil {
		if !dnsName.MatchString(l) || looksNumber(l) {
			return "", "", "", fmt.Errorf("not me, any, an IP address, a range, WINS/DNS/DHCP/GATEWAY or a DNS name")
		}
		return strings.TrimSuffix(v, "."), "", "a DNS name is resolved by charon each time it initiates (Windows resolved it once, when the filter was added)" + maskIgnoredSuffix(mask, hasMask), nil
	}
	bits := ip.BitLen()
	if hasMask {
		b, err := maskBits(mask, ip.Is4())
		if err != nil {
			return "", "", "", err
		}
		bits = b
	}
	pfx := netip.PrefixFrom(ip, bits).Masked()
	if bits == ip.BitLen() {
		return ip.String(), "", "", nil
	}
	if bits == 0 {
		return "any", "", "mask 0: any address", nil
	}
	if pfx.Addr() != ip {
		note = fmt.Sprintf("the mask leaves host bits: the subnet is %s, as Windows masked it", pfx)
	}
	return pfx.String(), "", note, nil
}

func looksNumber(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

func maskIgnored(mask string, has bool, fine ...string) string {
	if !has {
		return ""
	}
	for _, f := range fine {
		if mask == f {
			return ""
		}
	}
	return "the mask " + strconv.Quote(mask) + " has no meaning here and is ignored"
}

func maskIgnoredSuffix(mask string, has bool) string {
	if has {
		return "; the mask " + strconv.Quote(mask) + " is ignored"
	}
	return ""
}

// maskBits reads a dotted mask (255.255.255.0) or a prefix length (24).
func maskBits(mask string, v4 bool) (int, error) {
	max := 128
	if v4 {
		max = 32
	}
	if n, err := strconv.Atoi(mask); err == nil {
		if n < 0 || n > max {
			return 0, fmt.Errorf("mask %q: a prefix length is 0-%d", mask, max)
		}
		return n, nil
	}
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() || !v4 {
		return 0, fmt.Errorf("mask %q: want a dotted IPv4 mask such as 255.255.255.0 or a prefix length", mask)
	}
	b := m.As4()
	bits, ones := 0, true
	for _, by := range b {
		for i := 7; i >= 0; i-- {
			set := by&(1<<i) != 0
			if set && !ones {
				return 0, fmt.Errorf("mask %q has a hole: its ones must come first", mask)
			}
			if set {
				bits++
			} else {
				ones = false
			}
		}
	}
	return bits, nil
}
