package importer

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// result maps the chosen policy.
func (n *netsh) result(file string) (*Result, error) {
	pol, err := n.choose(file)
	if err != nil {
		return nil, err
	}
	res := &Result{Source: file, Tool: "netsh"}
	res.Notes = append(res.Notes, n.notes...)
	res.Notes = append(res.Notes, pol.ikeNotes...)
	for _, o := range n.policies {
		if o != pol {
			res.Notes = append(res.Notes, Note{Where: o.where, Text: fmt.Sprintf("policy %q is not the one imported (%q): left out", o.name, pol.name)})
		}
	}
	out := &res.File
	out.Assign = pol.name
	out.Endpoint = Endpoint{Name: n.o.Name, Addresses: n.o.Addresses, RemoteAccessInterface: n.o.RemoteAccessInterface}
	outPol := Policy{Name: pol.name, Description: pol.desc}
	usedLists, usedActions := map[string]bool{}, map[string]bool{}
	keys := &keyFiles{prefix: n.o.KeyPrefix}
	negotiate := false
	for _, r := range pol.rules {
		rule, ok := n.rule(r, pol, keys, &res.Notes)
		if !ok {
			continue
		}
		outPol.Rules = append(outPol.Rules, rule)
		if !usedLists[r.list] {
			usedLists[r.list] = true
			l := n.list(r.list)
			fl := FilterList{Name: l.name, Description: l.desc}
			for _, f := range l.filters {
				if n.filterFits(f, r, n.action(r.action)) != "" {
					continue // reported by rule
				}
				res.Notes = append(res.Notes, f.notes...)
				if !f.mirrored {
					if r.tunnel != "" {
						res.Notes = append(res.Notes, Note{Where: f.where, Text: "mirrored=no, as a Windows tunnel filter must be: swanmgr's tunnel rule covers both directions"})
					} else {
						res.Notes = append(res.Notes, Note{Where: f.where, Lossy: true, Text: "mirrored=no has no strongSwan equivalent: every CHILD_SA and every pass or drop shunt covers both directions. Imported mirrored"})
					}
				}
				fl.Filters = append(fl.Filters, Filter{Description: f.desc, Source: f.src, Destination: f.dst,
					Protocol: f.proto, SourcePort: f.sport, DestinationPort: f.dport})
			}
			out.FilterLists = append(out.FilterLists, fl)
		}
		if !usedActions[r.action] {
			usedActions[r.action] = true
			a := n.action(r.action)
			res.Notes = append(res.Notes, a.notes...)
			out.FilterActions = append(out.FilterActions, a.out)
		}
		if dns := dnsFilter(n.list(r.list)); dns != "" && n.action(r.action).action == "negotiate" {
			for i := range out.FilterActions {
				if fa := &out.FilterActions[i]; fa.Name == r.action && fa.Guard == nil {
					off := false
					fa.Guard = &off
					res.Notes = append(res.Notes, Note{Where: n.action(r.action).where, Text: fmt.Sprintf("filter action %q: guard = false, because rule %q names the DNS name %s: swanmgr's nftables guard needs addresses, so clear text is dropped only while charon runs and the SA exists (Windows resolved the name once and filtered by address)", r.action, r.name, dns)})
				}
			}
		}
		if n.action(r.action).action == "negotiate" && !rule.Disabled {
			negotiate = true
		}
	}
	for _, l := range n.lists {
		if !usedLists[l.name] {
			res.Notes = append(res.Notes, Note{Where: l.where, Text: fmt.Sprintf("filter list %q is not used by an imported rule of policy %q: left out", l.name, pol.name)})
		}
	}
	for _, a := range n.actions {
		if !usedActions[a.name] {
			res.Notes = append(res.Notes, Note{Where: a.where, Text: fmt.Sprintf("filter action %q is not used by an imported rule of policy %q: left out", a.name, pol.name)})
		}
	}
	if pol.defaultRule {
		if negotiate {
			outPol.DefaultResponseRule = true
			res.Notes = append(res.Notes, Note{Where: pol.defaultWhere, Text: "the default response rule answers any peer with the authentication and security of the first negotiate rule"})
			res.Notes = append(res.Notes, pol.defaultSettings...)
		} else {
			res.Notes = append(res.Notes, Note{Where: pol.defaultWhere, Lossy: true, Text: "the default response rule needs a negotiate rule to take its authentication and security from, and none was imported: left out"})
		}
	}
	if len(outPol.Rules) == 0 {
		return nil, errAt(file, lineOf(pol.where), "policy %q: no rule could be imported%s", pol.name, lossySummary(res.Notes))
	}
	out.Policies = []Policy{outPol}
	res.Keys = keys.keys
	res.Notes = dedupe(res.Notes)
	res.Notes = sortNotes(res.Notes)
	return res, nil
}

func lossySummary(ns []Note) string {
	var s []string
	for _, n := range ns {
		if n.Lossy {
			s = append(s, "\n"+n.String())
		}
	}
	return strings.Join(s, "")
}

func lineOf(where string) int {
	i := strings.LastIndexByte(where, ':')
	n, _ := strconv.Atoi(where[i+1:])
	return n
}

func (n *netsh) choose(file string) (*nsPolicy, error) {
	if len(n.policies) == 0 {
		return nil, errAt(file, 1, "the script adds no policy (add policy name=...)")
	}
	names := make([]string, len(n.policies))
	for i, p := range n.policies {
		names[i] = strconv.Quote(p.name)
	}
	if n.o.Policy != "" {
		if p := n.policy(n.o.Policy); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("importer: %s: no policy %q (the script has %s)", file, n.o.Policy, strings.Join(names, ", "))
	}
	var assigned []*nsPolicy
	for _, p := range n.policies {
		if p.assign {
			assigned = append(assigned, p)
		}
	}
	switch {
	case len(assigned) == 1:
		return assigned[0], nil
	case len(assigned) > 1:
		last := assigned[len(assigned)-1]
		n.note(last.assignWhere, false, "several policies have assign=yes; Windows keeps one assigned, the last: %q", last.name)
		return last, nil
	case len(n.policies) == 1:
		n.note(n.policies[0].where, false, "no policy has assign=yes; the script's only policy is imported")
		return n.policies[0], nil
	}
	return nil, fmt.Errorf("importer: %s: no policy has assign=yes: choose one of %s with --policy", file, strings.Join(names, ", "))
}

// keyFiles names one key file per distinct preshared key.
type keyFiles struct {
	prefix string
	keys   []Key
}

func (k *keyFiles) file(secret, where string) string {
	for _, have := range k.keys {
		if have.Secret.Reveal() == secret {
			return have.File
		}
	}
	p := k.prefix
	if p == "" {
		p = "imported"
	}
	name := p + ".psk"
	if len(k.keys) > 0 {
		name = fmt.Sprintf("%s-%d.psk", p, len(k.keys)+1)
	}
	k.keys = append(k.keys, Key{File: name, Secret: model.NewSecret(secret), Where: where})
	return name
}

func (n *netsh) isMe(a string) bool {
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return false
	}
	for _, m := range n.o.Addresses {
		if mm, err := netip.ParseAddr(m); err == nil && mm == ip {
			return true
		}
	}
	return false
}

// rule maps one rule; false when it cannot be imported (the reason is in
// the notes).
func (n *netsh) rule(r *nsRule, pol *nsPolicy, keys *keyFiles, notes *[]Note) (Rule, bool) {
	label := fmt.Sprintf("rule %q", r.name)
	if r.name == "" {
		label = fmt.Sprintf("the rule for filter list %q", r.list)
	}
	lossy := func(format string, args ...any) {
		*notes = append(*notes, Note{Where: r.where, Lossy: true, Text: label + ": " + fmt.Sprintf(format, args...)})
	}
	info := func(format string, args ...any) {
		*notes = append(*notes, Note{Where: r.where, Text: label + ": " + fmt.Sprintf(format, args...)})
	}
	act := n.action(r.action)
	out := Rule{Name: r.name, FilterList: r.list, FilterAction: r.action, Disabled: !r.activate}
	l := n.list(r.list)
	kept := 0
	for _, f := range l.filters {
		if why := n.filterFits(f, r, act); why != "" {
			*notes = append(*notes, Note{Where: f.where, Lossy: true, Text: fmt.Sprintf("filter list %q: %s", l.name, why)})
			continue
		}
		kept++
	}
	if kept == 0 {
		lossy("filter list %q has no filter that can be imported: rule left out", r.list)
		return out, false
	}
	switch r.conntype {
	case "lan":
		out.Network = "lan"
		info("conntype=lan: network = \"lan\"; without endpoint.lan_interface it applies to every interface (Linux cannot tell LAN from remote access by itself)")
	case "dialup":
		out.Network = "remote-access"
		if n.o.RemoteAccessInterface == "" {
			info("conntype=dialup: network = \"remote-access\" needs endpoint.remote_access_interface: give --remote-access-interface")
		}
	}
	if r.tunnel != "" {
		switch {
		case act.action != "negotiate":
			info("tunnel=%q is ignored with a %s filter action, as Windows ignores it", r.tunnel, act.action)
		case n.isMe(r.tunnel):
			paired := false
			for _, o := range pol.rules {
				if o != r && o.tunnel != "" && !n.isMe(o.tunnel) && o.action == r.action {
					paired = true
				}
			}
			if paired {
				info("tunnel=%s is this computer: the inbound half of a Windows tunnel pair; swanmgr's rule for the peer's tunnel endpoint covers both directions, so this one is left out", r.tunnel)
			} else {
				lossy("tunnel=%s is this computer (the inbound half of a Windows tunnel pair) and no rule names the peer's tunnel endpoint: left out; add the outbound rule", r.tunnel)
			}
			return out, false
		default:
			ip, err := netip.ParseAddr(r.tunnel)
			if err != nil {
				lossy("tunnel=%q: swanmgr's tunnel_endpoint is an IP address: rule left out (give the address)", r.tunnel)
				return out, false
			}
			out.TunnelEndpoint = ip.String()
		}
	}
	if act.action != "negotiate" {
		if len(r.auths) > 0 {
			info("authentication methods are ignored with a %s filter action, as Windows ignores them", act.action)
		}
		return out, true
	}
	if len(r.auths) == 0 {
		lossy("no authentication method: Windows used Kerberos, which strongSwan does not have; use certificates or a preshared key (add psk= or rootca=): rule left out")
		return out, false
	}
	for _, a := range r.auths {
		if len(out.Authentication) > 0 {
			lossy("%s: strongSwan uses one authentication method per connection and does not fall back to the next: left out (the rule uses %s)", methodLabel(a), out.Authentication[0].Method)
			continue
		}
		switch a.kind {
		case "kerberos":
			lossy("kerberos=yes: strongSwan has no Kerberos; use certificates or a preshared key")
		case "psk":
			out.Authentication = append(out.Authentication, Auth{Method: "psk", SecretFile: keys.file(a.value, a.where)})
		case "rootca":
			ca, certmap, exclude := splitRootCA(a.value)
			au := Auth{Method: "certificate", CA: orDefault(n.o.CA, "ca.pem"), Certificate: orDefault(n.o.Certificate, "host.pem"), PrivateKey: orDefault(n.o.PrivateKey, "host.key")}
			out.Authentication = append(out.Authentication, au)
			info("rootca=%q: certificate authentication needs the files %s (that CA's certificate), %s (this computer's certificate, issued by it, with its address as a subjectAltName) and %s (its private key, mode 0600); Windows took them from its certificate store", ca, au.CA, au.Certificate, au.PrivateKey)
			if certmap {
				lossy("rootca certmap:yes (map certificates to Windows accounts) has no equivalent: charon authenticates the computer by its certificate alone")
			}
			if exclude {
				info("rootca excludecaname:yes has no effect: charon sends certificate requests for the CAs it trusts")
			}
		}
	}
	if len(out.Authentication) == 0 {
		lossy("no authentication method strongSwan offers: rule left out")
		return out, false
	}
	return out, true
}

func methodLabel(a nsAuth) string {
	switch a.kind {
	case "psk":
		return "psk= (a second preshared key)"
	case "rootca":
		return fmt.Sprintf("rootca=%q", a.value)
	}
	return "kerberos=yes"
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// splitRootCA separates the CA name from the certmap: (certmapping:),
// excludecaname: and catype: options at its end.
func splitRootCA(v string) (ca string, certmap, exclude bool) {
	words := strings.Fields(v)
	var keep []string
	for _, w := range words {
		l := strings.ToLower(w)
		switch {
		case strings.HasPrefix(l, "certmap:"), strings.HasPrefix(l, "certmapping:"):
			_, v, _ := strings.Cut(l, ":")
			certmap = strings.HasPrefix(v, "y")
		case strings.HasPrefix(l, "catype:"):
			// root or intermediate: either way the CA file is the anchor
		case strings.HasPrefix(l, "excludecaname:"):
			exclude = strings.HasPrefix(strings.TrimPrefix(l, "excludecaname:"), "y")
		default:
			keep = append(keep, w)
		}
	}
	return strings.ReplaceAll(strings.Join(keep, " "), `\'`, `"`), certmap, exclude
}

// dedupe drops repeated notes (a filter list shared by two rules).
func dedupe(ns []Note) []Note {
	seen := map[Note]bool{}
	out := ns[:0]
	for _, n := range ns {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// dnsFilter is the first DNS name of a list's filters, or "".
func dnsFilter(l *nsList) string {
	for _, f := range l.filters {
		for _, a := range []string{f.src, f.dst} {
			if isDNS(a) && f.drop == "" {
				return a
			}
		}
	}
	return ""
}

func isDNS(a string) bool {
	if a == "me" || a == "any" || a == "" {
		return false
	}
	if _, err := netip.ParseAddr(a); err == nil {
		return false
	}
	_, err := netip.ParsePrefix(a)
	return err != nil
}

// sortNotes orders notes by line (stable: one line's notes keep their order).
func sortNotes(ns []Note) []Note {
	sort.SliceStable(ns, func(i, j int) bool { return lineOf(ns[i].Where) < lineOf(ns[j].Where) })
	return ns
}

// filterFits says why a filter cannot be part of a rule ("" if it can):
// what the filter itself cannot carry, and what swanmgr's rules cannot
// express (validation would refuse it).
func (n *netsh) filterFits(f nsFilter, r *nsRule, act *nsAction) string {
	if f.drop != "" {
		return f.drop
	}
	dns := isDNS(f.src) || isDNS(f.dst)
	switch {
	case r.tunnel != "" && n.isMe(r.tunnel):
		// the inbound half of a tunnel pair: the rule is left out whole
	case act.action != "negotiate":
		if dns {
			return "a DNS name in a " + act.action + " filter: its kernel policies need addresses: filter left out (write the address)"
		}
	case r.tunnel != "" && !n.isMe(r.tunnel):
		if dns {
			return "a DNS name in a tunnel filter: tunnel selectors need addresses: filter left out (write the address or subnet)"
		}
	default:
		src, dst := n.meOr(f.src), n.meOr(f.dst)
		other := dst
		switch {
		case src == "me" && dst == "me":
			return "both sides are this computer: filter left out"
		case src == "me":
		case dst == "me":
			other = src
		default:
			return fmt.Sprintf("%s → %s: without a tunnel a negotiate filter has this computer (me) on one side: filter left out", f.src, f.dst)
		}
		if !isHost(other) {
			return fmt.Sprintf("the peer %s is not one host: transport mode needs one (charon initiates to one address): filter left out (list the hosts, or use a tunnel)", other)
		}
	}
	return ""
}

// meOr is "me" for me and this computer's own addresses.
func (n *netsh) meOr(a string) string {
	if a == "me" || n.isMe(a) {
		return "me"
	}
	return a
}
