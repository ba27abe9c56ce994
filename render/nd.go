package render

import (
	"fmt"
	"net/netip"

	"github.com/swanmgr/swanmgr/model"
)

// NDConn is the connection of the pass policies that exempt IPv6
// neighbour discovery (see neighbourDiscovery).
const NDConn = NamePrefix + "ipv6-nd"

// NDRule is the rule name under which the neighbour discovery exemption
// is recorded and shown; it is no rule of the policy.
const NDRule = "IPv6 neighbour discovery (automatic)"

// ndTypes are the ICMPv6 types of neighbour discovery (RFC 4861): router
// solicitation and advertisement, neighbour solicitation and
// advertisement, redirect.
var ndTypes = []int{133, 134, 135, 136, 137}

// neighbourDiscovery exempts IPv6 neighbour discovery from IPsec when a
// negotiate or block rule covers ICMPv6 (protocol any or ipv6-icmp with
// IPv6 on either side), as strongSwan's documentation recommends: a trap
// or IPsec policy for the peer would also take its neighbour solicitations
// and advertisements, the neighbour entry fails and not even IKE gets
// through. One pass child per type, all addresses (link-local and
// multicast included), in charon's pass band, which beats every IPsec and
// drop policy. Windows IPsec never applied to neighbour discovery. On
// libipsec pass policies are ignored (and there are no traps), so nothing
// is rendered there.
func (r *renderer) neighbourDiscovery() {
	if r.o.Backend == LibIPsec || !r.coversND() {
		return
	}
	where := "IPv6 neighbour discovery"
	if !r.claim(NDConn, "the IPv6 neighbour discovery exemption", 0, where) {
		return
	}
	conn := Conn{
		Name:    NDConn,
		Origin:  Origin{Policy: r.a.Policy.Name, Rule: NDRule, RuleIndex: -1, Action: string(model.Permit)},
		Comment: "IPv6 neighbour discovery (ICMPv6 133-137) passes in clear: a rule covers ICMPv6, and trapping or encrypting it would break neighbour resolution, IKE included",
	}
	body := &Section{}
	children := body.Sub("children", "")
	for _, t := range ndTypes {
		child := fmt.Sprintf("%s-%d", NDConn, t)
		if !r.claim(child, "the IPv6 neighbour discovery exemption", 0, where) {
			continue
		}
		sel := fmt.Sprintf("::/0[ipv6-icmp/%d]", t)
		cs := children.Sub(child, fmt.Sprintf("ICMPv6 type %d", t))
		cs.SetList("local_ts", sel)
		cs.SetList("remote_ts", sel)
		cs.Set("mode", "pass")
		cs.Set("start_action", "trap")
		conn.Children = append(conn.Children, ChildOrigin{Name: child, FilterIndex: -1, Summary: fmt.Sprintf("any ↔ any ipv6-icmp type %d", t), Rule: NDRule})
	}
	conn.Body = body
	r.res.Conns = append(r.res.Conns, conn)
}

// coversND reports whether a negotiate or block rule has a filter that
// matches ICMPv6 neighbour discovery: protocol any or ipv6-icmp, no
// ports, IPv6 on one side (or "me", "any" or a DNS name on an endpoint
// with an IPv6 address).
func (r *renderer) coversND() bool {
	ep6 := false
	for _, s := range r.a.Endpoint.Addresses {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() && !ip.Is4In6() {
			ep6 = true
		}
	}
	may6 := func(a model.Addr) (known, v6 bool) {
		if a.Prefix.IsValid() {
			return true, a.Prefix.Addr().Is6()
		}
		return false, ep6
	}
	for _, rule := range r.a.Rules {
		if rule.Action.Action != model.Negotiate && rule.Action.Action != model.Block {
			continue
		}
		for _, f := range rule.Filters {
			if (f.Proto != 0 && f.Proto != 58) || f.SrcPort != model.AnyPort || f.DstPort != model.AnyPort {
				continue
			}
			ks, s6 := may6(f.Src)
			kd, d6 := may6(f.Dst)
			switch {
			case ks && kd:
				if s6 && d6 {
					return true
				}
			case ks:
				if s6 {
					return true
				}
			case kd:
				if d6 {
					return true
				}
			default:
				if ep6 {
					return true
				}
			}
		}
	}
	return false
}
