package render

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// Warnings: what a backend does differently from Windows with a policy it
// accepts (Result.Warnings; validate, plan and apply print them).

// unresolvedTraps warns about negotiate rules to a DNS name on the kernel
// backend (the guard refuses them unless guard = false): charon resolves
// the name when it installs the connection's trap policies, and if the name
// does not resolve then it logs "installing trap failed, remote address
// unknown with dynamic traffic selector", installs nothing and the traffic
// goes in clear, while loading the connection succeeds.
func (r *renderer) unresolvedTraps() {
	for _, rule := range r.a.Rules {
		if rule.Action.Action != model.Negotiate || rule.Tunnel.IsValid() {
			continue
		}
		for _, peer := range model.Peers(rule) {
			if _, err := netip.ParseAddr(peer); err == nil || peer == "any" {
				continue
			}
			if _, err := netip.ParsePrefix(peer); err == nil {
				continue
			}
			r.res.Warnings = append(r.res.Warnings, r.a.File.Problem(rule.Line, rule.Where(r.a.Policy), fmt.Sprintf("peer %s is a DNS name: charon resolves it when apply loads the connection, and if it does not resolve then, charon installs no trap policy (its log: \"installing trap failed, remote address unknown\") and the traffic goes in clear: apply then says so and fails, and applies again until it resolves; write the address instead where you can", peer), true))
		}
	}
}

// blackHoles warns about traffic libipsec drops where Windows sends it
// in clear. kernel-libipsec routes everything to a CHILD_SA's remote
// selectors' addresses into its TUN device (ipsec0) while the SA is up,
// ports and protocols aside (a route has none); a packet there that no
// CHILD_SA's selectors match is dropped. So with a negotiate rule for
// some traffic to a peer, all other traffic to that peer times out.
func (r *renderer) blackHoles() {
	type dest struct {
		rule   model.ResolvedRule
		covers []string // what the filters protect, for the message
		all    bool     // a filter covers all traffic with the destination
	}
	var order []string
	dests := map[string]*dest{}
	for _, rule := range r.a.Rules {
		if rule.Action.Action != model.Negotiate {
			continue
		}
		for _, f := range rule.Filters {
			_, remote, lp, rp := orient(f)
			key := remote.Text
			if !rule.Tunnel.IsValid() {
				key = remote.Host()
			}
			d := dests[key]
			if d == nil {
				d = &dest{rule: rule}
				dests[key] = d
				order = append(order, key)
			}
			if f.Proto == 0 {
				d.all = true
				continue
			}
			what := f.ProtoString()
			if rp != model.AnyPort {
				what += "/" + strconv.Itoa(rp)
			}
			if lp != model.AnyPort {
				what += " from port " + strconv.Itoa(lp)
			}
			if !slices.Contains(d.covers, what) {
				d.covers = append(d.covers, what)
			}
		}
	}
	for _, key := range order {
		d := dests[key]
		if d.all {
			continue
		}
		r.res.Warnings = append(r.res.Warnings, r.a.File.Problem(d.rule.Line, d.rule.Where(r.a.Policy), fmt.Sprintf("on the libipsec backend, while an SA with %s is up, charon routes all traffic to %s into its TUN device, and what no filter covers (anything but %s) is dropped there instead of going in clear as in Windows: add a filter for all traffic to %s to a negotiate rule, or use the kernel backend (see docs/policy-format.md)",
			key, key, strings.Join(d.covers, ", "), key), true))
	}
}
