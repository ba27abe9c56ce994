package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultConsecPolicy names the policy of an imported consec script: the
// connection security rules of Windows Firewall with Advanced Security
// are not grouped in policies.
const DefaultConsecPolicy = "Connection security rules"

var consecRuleParams = []string{"name", "endpoint1", "endpoint2", "action", "description", "mode", "enable", "profile", "type",
	"localtunnelendpoint", "remotetunnelendpoint", "port1", "port2", "protocol", "interfacetype",
	"auth1", "auth1psk", "auth1ca", "auth1healthcert", "auth1ecdsap256ca", "auth1ecdsap256healthcert", "auth1ecdsap384ca", "auth1ecdsap384healthcert",
	"auth2", "auth2ca", "auth2healthcert", "auth2ecdsap256ca", "auth2ecdsap384ca",
	"qmpfs", "qmsecmethods", "exemptipsecprotectedconnections", "applyauthz"}

// MaxConsecFilters bounds the filters one rule expands to (endpoint and
// port lists multiply).
const MaxConsecFilters = 256

type consecRule struct {
	name string
	p    *params
	w    string
}

// Consec imports a script of `netsh advfirewall consec add rule` commands
// into one policy (Options.Policy, default DefaultConsecPolicy): each rule
// becomes a filter list, a filter action and a rule of that name.
func Consec(file string, data []byte, o Options) (*Result, error) {
	cmds, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := checkAddresses(o.Addresses); err != nil {
		return nil, err
	}
	var rules []consecRule
	for _, c := range cmds {
		switch c.Context {
		case "advfirewall consec", "":
		case "ipsec static":
			return nil, errAt(c.File, c.Line, "a netsh ipsec static command: import those with `swanmgr import netsh`")
		default:
			return nil, errAt(c.File, c.Line, "%q commands are not connection security rules (netsh advfirewall consec)", c.Context)
		}
		switch c.Verb + " " + c.Object {
		case "add rule":
			p, err := readParams(c, consecRuleParams, "")
			if err != nil {
				return nil, err
			}
			name, err := p.required("name")
			if err != nil {
				return nil, err
			}
			rules = append(rules, consecRule{name: name, p: p, w: c.Where()})
		case "delete rule":
			p, err := readParams(c, []string{"name", "type", "profile", "endpoint1", "endpoint2", "port1", "port2", "protocol"})
			if err != nil {
				return nil, err
			}
			name, err := p.required("name")
			if err != nil {
				return nil, err
			}
			if len(p.values) > 1 {
				return nil, p.errf("only delete rule name=... is read (the other selectors are not)")
			}
			kept := rules[:0]
			for _, r := range rules {
				if r.name != name && !strings.EqualFold(name, "all") {
					kept = append(kept, r)
				}
			}
			rules = kept
		default:
			return nil, errAt(c.File, c.Line, "%q is not a command swanmgr import consec reads (add rule, delete rule name=)", "advfirewall consec "+c.Verb+" "+c.Object)
		}
	}
	if len(rules) == 0 {
		return nil, errAt(file, 1, "the script adds no connection security rule (advfirewall consec add rule name=...)")
	}
	n := &netsh{o: o}
	res := &Result{Source: file, Tool: "consec"}
	name := o.Policy
	if name == "" {
		name = DefaultConsecPolicy
	}
	res.File.Assign = name
	res.File.Endpoint = Endpoint{Name: o.Name, Addresses: o.Addresses, RemoteAccessInterface: o.RemoteAccessInterface}
	pol := Policy{Name: name}
	keys := &keyFiles{prefix: o.KeyPrefix}
	used := map[string]int{}
	for _, r := range rules {
		used[r.name]++
		uname := r.name
		if used[r.name] > 1 {
			uname = fmt.Sprintf("%s (%d)", r.name, used[r.name])
			n.note(r.w, false, "a second rule named %q: imported as %q (swanmgr's names are unique)", r.name, uname)
		}
		fl, fa, rule, ok, err := n.consecRule(uname, r.p, r.w, keys)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		res.File.FilterLists = append(res.File.FilterLists, fl)
		res.File.FilterActions = append(res.File.FilterActions, fa)
		pol.Rules = append(pol.Rules, rule)
	}
	res.Notes = n.notes
	if len(pol.Rules) == 0 {
		return nil, errAt(file, 1, "no rule could be imported%s", lossySummary(res.Notes))
	}
	res.File.Policies = []Policy{pol}
	res.Keys = keys.keys
	res.Notes = sortNotes(dedupe(res.Notes))
	return res, nil
}

func checkAddresses(as []string) error {
	if len(as) == 0 {
		return fmt.Errorf("importer: no address for \"me\": give this computer's IP address (scripts do not name it)")
	}
	for _, a := range as {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("importer: address %q is not an IP address", a)
		}
	}
	return nil
}

// consecRule maps one connection security rule. ok is false when it
// cannot be imported (the notes say why); err is bad input.
func (n *netsh) consecRule(name string, p *params, w string, keys *keyFiles) (FilterList, FilterAction, Rule, bool, error) {
	label := fmt.Sprintf("rule %q", name)
	lossy := func(format string, args ...any) { n.note(w, true, label+": "+format, args...) }
	info := func(format string, args ...any) { n.note(w, false, label+": "+format, args...) }
	fl := FilterList{Name: name, Description: p.str("description")}
	fa := FilterAction{Name: name}
	rule := Rule{Name: name, FilterList: name, FilterAction: name}
	fail := func(err error) (FilterList, FilterAction, Rule, bool, error) { return fl, fa, rule, false, err }
	skip := func() (FilterList, FilterAction, Rule, bool, error) { return fl, fa, rule, false, nil }

	ep1, err := p.required("endpoint1")
	if err != nil {
		return fail(err)
	}
	ep2, err := p.required("endpoint2")
	if err != nil {
		return fail(err)
	}
	action, err := p.oneOf("action", "", "requireinrequestout", "requestinrequestout", "requireinrequireout", "requireinclearout", "noauthentication")
	if err != nil {
		return fail(err)
	}
	if action == "" {
		return fail(p.errf("action is required"))
	}
	mode, err := p.oneOf("mode", "transport", "transport", "tunnel")
	if err != nil {
		return fail(err)
	}
	enable, err := p.yesNo("enable", true)
	if err != nil {
		return fail(err)
	}
	rule.Disabled = !enable
	proto, err := consecProtocol(p)
	if err != nil {
		return fail(err)
	}
	if prof := strings.ToLower(p.str("profile")); prof != "" && prof != "any" && !(strings.Contains(prof, "domain") && strings.Contains(prof, "private") && strings.Contains(prof, "public")) {
		lossy("profile=%s: swanmgr has no firewall profiles: the rule applies on every network", p.str("profile"))
	}
	if t := strings.ToLower(p.str("type")); t == "dynamic" {
		info("type=dynamic: imported into the policy file, which `swanmgr apply` assigns (there is no separate dynamic store)")
	}
	switch it := strings.ToLower(p.str("interfacetype")); it {
	case "", "any":
	case "lan":
		rule.Network = "lan"
	case "ras":
		rule.Network = "remote-access"
		if n.o.RemoteAccessInterface == "" {
			info("interfacetype=ras: network = \"remote-access\" needs endpoint.remote_access_interface: give --remote-access-interface")
		}
	case "wireless", "wiresless":
		lossy("interfacetype=wireless: swanmgr cannot tell wireless interfaces apart: the rule applies to every interface")
	default:
		return fail(p.errf("interfacetype=%q: want any, lan, wireless or ras", p.str("interfacetype")))
	}
	for _, k := range []string{"exemptipsecprotectedconnections", "applyauthz"} {
		if yes, err := p.yesNo(k, false); err != nil {
			return fail(err)
		} else if yes {
			lossy("%s=yes has no equivalent (it concerns Windows Firewall's own rules): left out", k)
		}
	}

	// The action.
	switch action {
	case "noauthentication":
		fa.Action = "permit"
		info("action=noauthentication (an IPsec exemption): a permit filter action (clear text, mode = pass)")
	case "requireinrequireout":
		fa.Action = "negotiate"
	case "requireinrequestout":
		fa.Action = "negotiate"
		lossy("action=requireinrequestout requests IPsec outbound and falls back to clear text; charon cannot fall back to clear text when a peer does not answer IKE (as fallback_to_clear): imported as requireinrequireout (IPsec required both ways)")
	case "requestinrequestout":
		fa.Action = "negotiate"
		lossy("action=requestinrequestout accepts clear text both ways; charon installs the inbound and outbound policies of an SA together and cannot fall back to clear text (as accept_unsecured and fallback_to_clear): imported as requireinrequireout (IPsec required both ways)")
	case "requireinclearout":
		lossy("action=requireinclearout (protected inbound, clear outbound) has no equivalent: one strongSwan SA covers both directions: rule left out")
		return skip()
	}

	// The filters: endpoint1 is this computer's side.
	local, remote := splitList(ep1), splitList(ep2)
	tunnelEP := ""
	if mode == "tunnel" {
		rte, lte := p.str("remotetunnelendpoint"), p.str("localtunnelendpoint")
		if n.isMe(rte) && !n.isMe(lte) {
			local, remote, rte, lte = remote, local, lte, rte
			info("remotetunnelendpoint=%s is this computer: the rule is read from the other gateway's side (endpoint2 is this side's network)", p.str("remotetunnelendpoint"))
		}
		if lte != "" && !strings.EqualFold(lte, "any") && !n.isMe(lte) {
			lossy("localtunnelendpoint=%s is not one of this computer's addresses (--address): rule left out", lte)
			return skip()
		}
		ip, err := netip.ParseAddr(rte)
		if err != nil {
			lossy("remotetunnelendpoint=%q: swanmgr's tunnel_endpoint is the peer gateway's IP address (dynamic tunnels to any are not supported): rule left out", rte)
			return skip()
		}
		if fa.Action == "negotiate" {
			tunnelEP = ip.String()
			rule.TunnelEndpoint = tunnelEP
		}
	} else if !n.sideIsMe(local) {
		if n.sideIsMe(remote) {
			local, remote = remote, local
			info("endpoint2 holds this computer: endpoint1 is read as the peers")
		} else {
			lossy("neither endpoint1=%s nor endpoint2=%s holds this computer's address (--address): a transport rule protects this computer's own traffic: rule left out", ep1, ep2)
			return skip()
		}
	}
	var locals, remotes []string
	for _, side := range []struct {
		items []string
		out   *[]string
		key   string
		me    bool
	}{{local, &locals, "local endpoint", mode == "transport"}, {remote, &remotes, "remote endpoint", false}} {
		for _, it := range side.items {
			a, why := n.consecAddr(it, side.me)
			if why != "" {
				lossy("%s %s: %s", side.key, it, why)
				continue
			}
			if a == "me" && side.me && strings.ToLower(it) != "me" && !n.isMe(it) {
				info("%s %s holds this computer: source = \"me\" (a transport rule protects this computer's own traffic)", side.key, it)
			}
			if !contains(*side.out, a) {
				*side.out = append(*side.out, a)
			}
		}
	}
	ports1, err := n.consecPorts(p, "port1", proto, lossy)
	if err != nil {
		return fail(err)
	}
	ports2, err := n.consecPorts(p, "port2", proto, lossy)
	if err != nil {
		return fail(err)
	}
	if len(locals) == 0 || len(remotes) == 0 || len(ports1) == 0 || len(ports2) == 0 {
		lossy("no filter is left: rule left out")
		return skip()
	}
	if len(locals)*len(remotes)*len(ports1)*len(ports2) > MaxConsecFilters {
		return fail(p.errf("the endpoint and port lists expand to more than %d filters", MaxConsecFilters))
	}
	for _, l := range locals {
		for _, r := range remotes {
			if fa.Action == "negotiate" && mode == "transport" && !isHost(r) {
				lossy("endpoint %s: a transport rule needs peer hosts (charon initiates to one address), not a subnet or any: filter left out (list the hosts, or use mode=tunnel)", r)
				continue
			}
			for _, p1 := range ports1 {
				for _, p2 := range ports2 {
					fl.Filters = append(fl.Filters, Filter{Source: l, Destination: r, Protocol: proto, SourcePort: p1, DestinationPort: p2})
				}
			}
		}
	}
	if len(fl.Filters) == 0 {
		lossy("no filter is left: rule left out")
		return skip()
	}
	if fa.Action != "negotiate" {
		for _, k := range []string{"auth1", "auth2", "qmpfs", "qmsecmethods"} {
			if p.has(k) {
				info("%s is ignored with action=noauthentication", k)
			}
		}
		return fl, fa, rule, true, nil
	}
	if dns := dnsIn(fl.Filters); dns != "" {
		off := false
		fa.Guard = &off
		info("guard = false, because the filters name the DNS name %s: swanmgr's nftables guard needs addresses", dns)
	}

	// Security.
	add := func(l bool, format string, args ...any) { n.note(w, l, label+": "+format, args...) }
	if err := n.consecSecurity(&fa, p, add); err != nil {
		return fail(err)
	}

	// Authentication.
	methods := splitList(p.str("auth1"))
	if len(methods) == 0 {
		lossy("no auth1: Windows used Kerberos (computerkerb), which strongSwan does not have; use computercert or computerpsk: rule left out")
		return skip()
	}
	for _, m := range methods {
		lm := strings.ToLower(m)
		if len(rule.Authentication) > 0 {
			lossy("auth1 %s: strongSwan uses one authentication method per connection and does not fall back to the next: left out (the rule uses %s)", lm, rule.Authentication[0].Method)
			continue
		}
		switch lm {
		case "computerpsk":
			k := p.str("auth1psk")
			if strings.TrimSpace(k) == "" {
				return fail(p.errf("auth1=computerpsk needs auth1psk="))
			}
			rule.Authentication = append(rule.Authentication, Auth{Method: "psk", SecretFile: keys.file(k, w)})
		case "computercert", "computercertecdsap256", "computercertecdsap384":
			caKey := map[string]string{"computercert": "auth1ca", "computercertecdsap256": "auth1ecdsap256ca", "computercertecdsap384": "auth1ecdsap384ca"}[lm]
			ca, certmap, exclude := splitRootCA(p.str(caKey))
			au := Auth{Method: "certificate", CA: orDefault(n.o.CA, "ca.pem"), Certificate: orDefault(n.o.Certificate, "host.pem"), PrivateKey: orDefault(n.o.PrivateKey, "host.key")}
			rule.Authentication = append(rule.Authentication, au)
			info("auth1 %s (%s %q): certificate authentication needs the files %s (that CA's certificate), %s (this computer's certificate, issued by it, with its address as a subjectAltName) and %s (its private key, mode 0600); Windows took them from its certificate store", lm, caKey, ca, au.CA, au.Certificate, au.PrivateKey)
			if certmap {
				lossy("%s certmapping:yes (map certificates to Windows accounts) has no equivalent: charon authenticates the computer by its certificate alone", caKey)
			}
			if exclude {
				info("%s excludecaname:yes has no effect: charon sends certificate requests for the CAs it trusts", caKey)
			}
		case "computerkerb":
			lossy("auth1 computerkerb: strongSwan has no Kerberos; use certificates or a preshared key")
		case "computerntlm":
			lossy("auth1 computerntlm: strongSwan has no NTLM; use certificates or a preshared key")
		case "anonymous":
			lossy("auth1 anonymous (no authentication of the peer) is not offered: use certificates or a preshared key")
		default:
			return fail(p.errf("auth1 %q: want computerkerb, computercert, computercertecdsap256, computercertecdsap384, computerpsk, computerntlm or anonymous", m))
		}
	}
	if yes, _ := p.yesNo("auth1healthcert", false); yes {
		lossy("auth1healthcert=yes (NAP health certificates) has no equivalent: any certificate the CA issued is accepted")
	}
	if p.has("auth2") {
		lossy("auth2=%s: the second (user) authentication of AuthIP has no equivalent in swanmgr's format: left out", p.str("auth2"))
	}
	if len(rule.Authentication) == 0 {
		lossy("no authentication method strongSwan offers: rule left out")
		return skip()
	}
	return fl, fa, rule, true, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func isHost(a string) bool {
	if a == "any" {
		return false
	}
	_, err := netip.ParsePrefix(a)
	return err != nil
}

func dnsIn(fs []Filter) string {
	for _, f := range fs {
		for _, a := range []string{f.Source, f.Destination} {
			if isDNS(a) {
				return a
			}
		}
	}
	return ""
}

// sideIsMe: an endpoint list holds this computer (any, one of its
// addresses, or a subnet around one).
func (n *netsh) sideIsMe(items []string) bool {
	for _, it := range items {
		if a, why := n.consecAddr(it, true); why == "" && a == "me" {
			return true
		}
	}
	return false
}

// consecAddr maps one endpoint item; why says why it cannot be carried.
func (n *netsh) consecAddr(it string, local bool) (string, string) {
	l := strings.ToLower(it)
	switch l {
	case "any", "me":
		if local {
			return "me", ""
		}
		return "any", ""
	case "localsubnet", "dns", "dhcp", "wins", "defaultgateway":
		return "", "a keyword Windows resolved from its network settings; swanmgr needs the addresses: left out"
	}
	if lo, hi, ok := strings.Cut(l, "-"); ok {
		if _, e1 := netip.ParseAddr(lo); e1 == nil {
			if _, e2 := netip.ParseAddr(hi); e2 == nil {
				return "", "an address range has no traffic selector of its own in swanmgr's format (a subnet does): left out (write it as subnets)"
			}
		}
	}
	if ip, err := netip.ParseAddr(l); err == nil {
		if local && n.isMe(ip.String()) {
			return "me", ""
		}
		return ip.String(), ""
	}
	if addr, mask, ok := strings.Cut(l, "/"); ok {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return "", "not an address, a subnet, a range or a keyword: left out"
		}
		bits, err := maskBits(mask, ip.Is4())
		if err != nil {
			return "", err.Error() + ": left out"
		}
		pfx := netip.PrefixFrom(ip, bits).Masked()
		if local {
			for _, m := range n.o.Addresses {
				if mm, err := netip.ParseAddr(m); err == nil && pfx.Contains(mm) {
					return "me", ""
				}
			}
		}
		if bits == ip.BitLen() {
			return ip.String(), ""
		}
		return pfx.String(), ""
	}
	if dnsName.MatchString(l) && !looksNumber(l) {
		return strings.TrimSuffix(it, "."), ""
	}
	return "", "not an address, a subnet, a range or a keyword: left out"
}

func consecProtocol(p *params) (any, error) {
	v := strings.ToLower(p.str("protocol"))
	switch v {
	case "", "any":
		return nil, nil
	case "tcp", "udp":
		return v, nil
	case "icmpv4":
		return "icmp", nil
	case "icmpv6":
		return "ipv6-icmp", nil
	}
	num, err := strconv.Atoi(v)
	if err != nil || num < 0 || num > 255 {
		return nil, p.errf("protocol=%q: want any, tcp, udp, icmpv4, icmpv6 or 0-255", p.str("protocol"))
	}
	switch num {
	case 0:
		return nil, nil
	case 6:
		return "tcp", nil
	case 17:
		return "udp", nil
	}
	return num, nil
}

// consecPorts reads port1 or port2: any, a port, a list; a range is
// reported and left out.
func (n *netsh) consecPorts(p *params, k string, proto any, lossy func(string, ...any)) ([]int, error) {
	v := strings.ToLower(strings.TrimSpace(p.str(k)))
	if v == "" || v == "any" {
		return []int{0}, nil
	}
	if proto != "tcp" && proto != "udp" {
		return nil, p.errf("%s=%s needs protocol=tcp or udp", k, p.str(k))
	}
	var out []int
	for _, it := range splitList(v) {
		if strings.Contains(it, "-") {
			lossy("%s=%s: port ranges are not supported by the kernel's IPsec policies: left out (list the ports)", k, it)
			continue
		}
		num, err := strconv.Atoi(it)
		if err != nil || num < 0 || num > 65535 {
			return nil, p.errf("%s=%q: want any, a port 0-65535, a list or a range", k, p.str(k))
		}
		if !containsInt(out, num) {
			out = append(out, num)
		}
	}
	return out, nil
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
