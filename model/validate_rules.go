package model

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func (v *validator) policy(i int, ep Endpoint, lists map[string]*listInfo, actions map[string]*actionInfo, assigned bool) []ResolvedRule {
	p := &v.f.Policies[i]
	ppath := "policy[" + strconv.Itoa(i) + "]"
	pwhere := "policy " + strconv.Quote(p.Name)
	if len(p.Rules) == 0 && assigned {
		v.errf(ppath, pwhere, "has no rules: an assigned policy needs at least one [[policy.rule]] linking a filter list to a filter action")
	}
	out := make([]ResolvedRule, 0, len(p.Rules))
	ruleNames := make(map[string]int, len(p.Rules))
	for j := range p.Rules {
		r := &p.Rules[j]
		path := ppath + ".rule[" + strconv.Itoa(j) + "]"
		name := r.Name
		if name == "" {
			name = r.FilterList
		}
		if name == "" {
			name = fmt.Sprintf("rule %d", j+1)
		}
		where := pwhere + " rule " + strconv.Quote(name)
		if k, dup := ruleNames[name]; dup {
			v.errf(path, where, "duplicate rule name (also rule %d, at %s); give each rule a distinct name", k+1, v.at(fmt.Sprintf("%s.rule[%d]", ppath, k)))
		}
		ruleNames[name] = j
		n := len(v.errs)
		rr := ResolvedRule{Index: j, Name: name, Line: v.f.line(path), Rule: r, Network: r.Network}

		var li *listInfo
		switch {
		case r.FilterList == "":
			v.errf(path, where, "filter_list is required")
		case lists[r.FilterList] == nil:
			v.errf(path+".filter_list", where, "filter_list %q not found%s", r.FilterList, didYouMean(r.FilterList, mapKeys(lists)))
		default:
			li = lists[r.FilterList]
			rr.List = li.list
			rr.Filters = li.filters
		}
		var ai *actionInfo
		switch {
		case r.FilterAction == "":
			v.errf(path, where, "filter_action is required")
		case actions[r.FilterAction] == nil:
			v.errf(path+".filter_action", where, "filter_action %q not found%s", r.FilterAction, didYouMean(r.FilterAction, mapKeys(actions)))
		default:
			ai = actions[r.FilterAction]
			rr.Action = ai.action
		}

		switch r.Network {
		case "":
			rr.Network = NetworkAll
		case NetworkAll:
		case NetworkLAN:
		case NetworkRemoteAccess:
			if ep.RemoteAccessInterface == "" {
				v.errf(path+".network", where, "network = \"remote-access\" needs endpoint.remote_access_interface (the dial-up/VPN interface, e.g. \"ppp0\"): Linux cannot tell remote-access connections apart by itself")
			}
		default:
			v.errf(path+".network", where, "network %q is not \"lan\", \"remote-access\" or \"all\"", r.Network)
		}

		if r.TunnelEndpoint != "" {
			ip, err := netip.ParseAddr(r.TunnelEndpoint)
			if err != nil || ip.Zone() != "" {
				v.errf(path+".tunnel_endpoint", where, "tunnel_endpoint %q is not an IP address", r.TunnelEndpoint)
			} else if own(ep, ip) {
				// Windows tunnels are two one-way rules, the inbound one
				// naming this computer as its tunnel endpoint. In
				// strongSwan one tunnel child covers both directions;
				// an IKE_SA with itself is all this half would give.
				v.errf(path+".tunnel_endpoint", where, "tunnel_endpoint %s is this computer's own address: Windows needs two one-way tunnel rules (the inbound one ending here), strongSwan one rule for both directions. Remove this rule and keep only the outbound one, whose tunnel_endpoint is the remote gateway; its filters may list both directions, e.g. source = \"10.1.0.0/24\", destination = \"10.99.0.0/24\" (the reverse is covered, mirrored)", ip)
			} else {
				rr.Tunnel = ip
			}
		}

		if ai != nil && li != nil && ai.ok && li.ok {
			v.ruleShape(path, where, &rr, ep)
		}
		rr.Auth = v.auths(path, where, r, rr.Action.Action, assigned, ep)
		if assigned && !r.Disabled && len(v.errs) == n && li != nil && li.ok && len(rr.Auth) > 0 && rr.Auth[0].Method == PSK {
			for _, peer := range Peers(rr) {
				_, perr := netip.ParsePrefix(peer)
				if _, err := netip.ParseAddr(peer); err != nil && perr != nil && peer != "any" {
					v.warnf(path, where, "peer %s is a DNS name: charon expects it to authenticate with the IKE identity %q and looks the preshared key up by that identity, so the peer must set id = %q in its [endpoint]", peer, peer, peer)
				}
			}
		}
		if assigned && !r.Disabled && len(v.errs) == n {
			out = append(out, rr)
		}
	}
	return out
}

func mapKeys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ruleShape checks that the filters of a rule can be expressed in strongSwan.
func (v *validator) ruleShape(path, where string, rr *ResolvedRule, ep Endpoint) {
	if rr.Action.Action != Negotiate {
		if rr.Rule.TunnelEndpoint != "" {
			v.errf(path+".tunnel_endpoint", where, "tunnel_endpoint applies only to negotiate rules (filter action %q is %s)", rr.Action.Name, rr.Action.Action)
		}
		for _, f := range rr.Filters {
			if f.Src.Kind == AddrDNS || f.Dst.Kind == AddrDNS {
				v.errf(path, where, "filter_list %q filter %d: %s rules need addresses, not DNS names (%s → %s): the kernel policies that permit or block take addresses only", rr.List.Name, f.Index+1, rr.Action.Action, f.Src, f.Dst)
			}
		}
		return
	}
	tunnel := rr.Tunnel.IsValid()
	for _, f := range rr.Filters {
		// For messages only: made when one is.
		fw := func() string {
			return fmt.Sprintf("filter_list %q filter %d (%s → %s)", rr.List.Name, f.Index+1, f.Src, f.Dst)
		}
		if tunnel {
			if f.Src.Kind == AddrDNS || f.Dst.Kind == AddrDNS {
				v.errf(path, where, "%s: a tunnel's filters need addresses or subnets, not DNS names", fw())
			}
			continue
		}
		meSrc, meDst := f.Src.Kind == AddrMe, f.Dst.Kind == AddrMe
		switch {
		case !meSrc && !meDst:
			v.errf(path, where, "%s: without a tunnel, one side of a negotiate filter must be this computer (\"me\" or one of endpoint.addresses); set tunnel_endpoint to secure traffic between networks", fw())
		case meSrc && meDst:
			v.errf(path, where, "%s: both sides are this computer; a negotiate filter needs another host, subnet or \"any\" on one side", fw())
		}
		// A subnet or "any" as the other side is host to host with each
		// host contacted (one IKE_SA each, as Windows): the kernel
		// backend's trap connection with remote_addrs = the subnet does
		// that; render refuses it on libipsec, which has no traps.
		if o := otherSide(f); (o.Kind == AddrHost || o.Kind == AddrSubnet) && len(ep.Addresses) > 0 && len(AddressesFor(ep, o.Prefix.Addr())) == 0 {
			fam := "IPv4"
			if o.Prefix.Addr().Is6() {
				fam = "IPv6"
			}
			v.errf(path, where, "%s: peer %s is an %s address, and endpoint.addresses has none of that family (%s): add this computer's %s address to endpoint.addresses", fw(), o, fam, strings.Join(ep.Addresses, ", "), fam)
		}
	}
}

// LocalID is this endpoint's IKE identity towards peer: endpoint.id
// when the file sets it; otherwise the endpoint's first address of the
// peer's family (endpoint.id's default is the first address, which on a
// dual-stack endpoint would be an IPv4 identity on an IKE_SA over IPv6,
// and the peer, expecting the address it talks to, would refuse it).
func LocalID(a *Assigned, peer string) string {
	if a.File != nil && a.File.Endpoint.ID != "" {
		return a.Endpoint.ID
	}
	ip, err := netip.ParseAddr(peer)
	if err != nil {
		return a.Endpoint.ID
	}
	if mine := AddressesFor(a.Endpoint, ip); len(mine) > 0 {
		return mine[0]
	}
	return a.Endpoint.ID
}

// own reports whether ip is one of the endpoint's addresses.
func own(ep Endpoint, ip netip.Addr) bool {
	for _, s := range ep.Addresses {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == ip.Unmap() {
			return true
		}
	}
	return false
}

// AddressesFor returns the endpoint's addresses of peer's family: the
// local addresses an IKE_SA with peer can use (a dual-stack endpoint
// talks to an IPv4 peer from its IPv4 address and to an IPv6 peer from
// its IPv6 address). An invalid peer (a DNS name, any) gets all of them.
func AddressesFor(ep Endpoint, peer netip.Addr) []string {
	if !peer.IsValid() {
		return ep.Addresses
	}
	var out []string
	for _, s := range ep.Addresses {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is4() == peer.Unmap().Is4() {
			out = append(out, s)
		}
	}
	return out
}

// otherSide returns the peer side of a transport filter.
func otherSide(f ResolvedFilter) Addr {
	if f.Src.Kind == AddrMe {
		return f.Dst
	}
	return f.Src
}

func (v *validator) auths(path, where string, r *Rule, action Action, assigned bool, ep Endpoint) []ResolvedAuth {
	if action != Negotiate {
		if len(r.Authentication) > 0 && action != "" {
			v.warnf(path+".authentication", where, "authentication is not used by a %s rule (no IKE negotiation happens)", action)
		}
		return nil
	}
	if len(r.Authentication) == 0 {
		v.errf(path, where, "authentication is required for a negotiate rule, e.g. authentication = [ { method = \"psk\", secret_file = \"peer.psk\" } ]")
		return nil
	}
	if len(r.Authentication) > 1 {
		v.warnf(path+".authentication", where, "only the first authentication method (%s) is used: strongSwan offers one method per connection and does not try the next one", r.Authentication[0].Method)
	}
	var out []ResolvedAuth
	for k, a := range r.Authentication {
		apath := path + ".authentication[" + strconv.Itoa(k) + "]"
		awhere := where + " authentication " + strconv.Itoa(k+1)
		ra := ResolvedAuth{Method: a.Method}
		// Secrets and key files are read only where they are used: the
		// first method of an enabled rule of the assigned policy.
		read := assigned && !r.Disabled && k == 0
		switch a.Method {
		case PSK:
			if a.CA != "" || a.Certificate != "" || a.PrivateKey != "" || a.PeerID != "" {
				v.errf(apath, awhere, "ca, certificate, private_key and peer_id belong to method = \"certificate\"")
			}
			set := 0
			for _, s := range []bool{a.SecretFile != "", a.SecretEnv != "", !a.Secret.IsZero()} {
				if s {
					set++
				}
			}
			if set != 1 {
				v.errf(apath, awhere, "a preshared key needs exactly one of secret_file, secret_env or secret (found %d)", set)
				break
			}
			if read {
				ra.PSK, ra.Source = v.psk(apath, awhere, a)
			}
		case Certificate:
			if a.SecretFile != "" || a.SecretEnv != "" || !a.Secret.IsZero() {
				v.errf(apath, awhere, "secret_file, secret_env and secret belong to method = \"psk\"")
			}
			for _, req := range []struct{ key, val string }{{"ca", a.CA}, {"certificate", a.Certificate}, {"private_key", a.PrivateKey}} {
				if req.val == "" {
					v.errf(apath, awhere, "method = \"certificate\" needs %s", req.key)
				}
			}
			if a.PeerID != "" && !identityRe.MatchString(a.PeerID) {
				v.errf(apath+".peer_id", awhere, "peer_id %q is not a usable IKE identity (an address, a DNS name, an e-mail address or a distinguished name like \"CN=Bobslap\")", a.PeerID)
			}
			if a.CA == "" || a.Certificate == "" || a.PrivateKey == "" {
				break
			}
			ca, cert, key := v.f.Resolve(a.CA), v.f.Resolve(a.Certificate), v.f.Resolve(a.PrivateKey)
			// swanctl.conf takes certificate paths relative to its own
			// x509 folders, so the resolved paths are made absolute.
			ra.CAPath, ra.CertPath, ra.KeyPath, ra.PeerID = absPath(ca), absPath(cert), absPath(key), a.PeerID
			if read {
				ra.CA = v.readFile(apath+".ca", awhere, "ca", ca)
				ra.Cert = v.readFile(apath+".certificate", awhere, "certificate", cert)
				if v.secretFileOK(apath+".private_key", awhere, "private_key", key) {
					if b := v.readFile(apath+".private_key", awhere, "private_key", key); b != nil {
						ra.Key = NewSecret(string(b))
					}
				}
				v.checkCertAuth(apath, awhere, ra, ca, cert, key, ep.ID)
			}
		case Kerberos:
			v.errf(apath+".method", awhere, "method = \"kerberos\" is not available: strongSwan has no Kerberos (Windows 2000 default) authentication; use method = \"certificate\" with a CA both computers trust, or \"psk\"")
		case "":
			v.errf(apath, awhere, "method is required (\"psk\" or \"certificate\")")
		default:
			v.errf(apath+".method", awhere, "method %q is not \"psk\" or \"certificate\"%s", a.Method, didYouMean(string(a.Method), []string{"psk", "certificate", "kerberos"}))
		}
		out = append(out, ra)
	}
	return out
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// psk reads a preshared key. The value never appears in a message.
func (v *validator) psk(path, where string, a Auth) (Secret, string) {
	var val, src string
	switch {
	case a.SecretFile != "":
		sf, ok := v.secretFiles[a.SecretFile]
		if !ok {
			sf = secretFile{path: v.f.Resolve(a.SecretFile), src: "secret_file " + a.SecretFile}
			if v.secretFiles == nil {
				v.secretFiles = map[string]secretFile{}
			}
			v.secretFiles[a.SecretFile] = sf
		}
		p, kp := sf.path, path+".secret_file"
		src = sf.src
		if !v.secretFileOK(kp, where, "secret_file", p) {
			return Secret{}, src
		}
		b := v.readFile(kp, where, "secret_file", p)
		if b == nil {
			return Secret{}, src
		}
		val = strings.TrimRight(string(b), "\r\n")
		if strings.ContainsAny(val, "\r\n") {
			v.errf(path+".secret_file", where, "secret_file %s holds more than one line; put only the key in it", p)
			return Secret{}, src
		}
	case a.SecretEnv != "":
		src = "secret_env " + a.SecretEnv
		s, ok := v.o.LookupEnv(a.SecretEnv)
		if ok {
			v.inputs = append(v.inputs, Input{Kind: "env", Name: a.SecretEnv, Data: NewSecret(s)})
		}
		if !ok {
			v.errf(path+".secret_env", where, "secret_env: environment variable %s is not set", a.SecretEnv)
			return Secret{}, src
		}
		val = s
	default:
		src = "inline secret"
		val = a.Secret.Reveal()
		v.warnf(path, where, "the preshared key is written in the policy file; prefer secret_file (mode 0600) or secret_env")
	}
	if val == "" {
		v.errf(path, where, "the preshared key from %s is empty", src)
		return Secret{}, src
	}
	if len(val) < MinPSKLength {
		v.warnf(path, where, "the preshared key from %s is shorter than %d characters; use a long random string", src, MinPSKLength)
	}
	return NewSecret(val), src
}

// secretFileOK refuses a secret file that group or others can read.
func (v *validator) secretFileOK(path, where, key, file string) bool {
	if v.okFiles[file] {
		return true
	}
	if b := v.badFiles[file]; b != nil {
		b.more++
		return false
	}
	if v.badFiles == nil {
		v.badFiles = map[string]*badFile{}
	}
	v.badFiles[file] = &badFile{problem: len(v.errs)}
	st, err := os.Stat(file)
	if err != nil {
		v.errf(path, where, "%s %s: %v", key, file, statErr(err))
		return false
	}
	if st.IsDir() {
		v.errf(path, where, "%s %s is a directory", key, file)
		return false
	}
	if !st.Mode().IsRegular() {
		v.errf(path, where, "%s %s is not a regular file", key, file)
		return false
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && !v.o.InsecureSecrets {
		v.errf(path, where, "%s %s is readable by group or others (mode %04o): run chmod 600 %s, or pass --insecure-secrets", key, file, perm, file)
		return false
	}
	if !v.o.InsecureSecrets {
		if msg := secretFileControl(file, st); msg != "" {
			v.errf(path, where, "%s %s %s", key, file, msg)
			return false
		}
	}
	delete(v.badFiles, file)
	if v.okFiles == nil {
		v.okFiles = map[string]bool{}
	}
	v.okFiles[file] = true
	return true
}

// maxFileSize bounds what swanmgr reads for a key, certificate or secret:
// far more than any of them needs, and a device or FIFO named by mistake
// cannot make validation hang or eat memory.
const maxFileSize = 1 << 20

func (v *validator) readFile(path, where, key, file string) []byte {
	if b, ok := v.data[file]; ok {
		return b
	}
	// Stat before opening: opening a FIFO would wait for a writer.
	if st, err := os.Stat(file); err == nil && !st.Mode().IsRegular() {
		v.errf(path, where, "%s %s is not a regular file", key, file)
		return nil
	}
	fh, err := os.Open(file)
	if err != nil {
		v.errf(path, where, "%s %s: %v", key, file, statErr(err))
		return nil
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		v.errf(path, where, "%s %s: %v", key, file, statErr(err))
		return nil
	}
	if len(b) > maxFileSize {
		v.errf(path, where, "%s %s is larger than %d bytes", key, file, maxFileSize)
		return nil
	}
	if v.data == nil {
		v.data = map[string][]byte{}
	}
	v.data[file] = b
	v.inputs = append(v.inputs, Input{Kind: "file", Name: file, Data: NewSecret(string(b))})
	return b
}

func statErr(err error) string {
	switch {
	case os.IsNotExist(err):
		return "no such file"
	case os.IsPermission(err):
		return "permission denied"
	}
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// crossRuleChecks finds conflicts between rules of the assigned policy.
// All negotiate rules to one peer are rendered into one connection (charon
// selects one peer config per peer and looks a CHILD_SA up only among its
// children), so they must authenticate alike: one method, one preshared
// key, the same certificates and expected identity.
func (v *validator) crossRuleChecks(a *Assigned) {
	type use struct {
		rule string
		auth []ResolvedAuth
	}
	byPeer := make(map[string]use, len(a.Rules))
	for _, r := range a.Rules {
		if r.Action.Action != Negotiate || len(r.Auth) == 0 {
			continue
		}
		for _, peer := range Peers(r) {
			key := strings.ToLower(peer)
			prev, seen := byPeer[key]
			if !seen {
				byPeer[key] = use{r.Name, r.Auth}
				continue
			}
			if prev.rule == r.Name {
				continue
			}
			path, where := fmt.Sprintf("policy[%d].rule[%d].authentication", policyIndex(a), r.Index), r.Where(a.Policy)
			if prev.auth[0].Method == PSK && r.Auth[0].Method == PSK {
				if !prev.auth[0].PSK.IsZero() && !r.Auth[0].PSK.IsZero() && prev.auth[0].PSK.Reveal() != r.Auth[0].PSK.Reveal() {
					v.errf(path, where, "uses a different preshared key for peer %s than rule %q: charon picks a preshared key by the peers' identities, not by rule, so one peer can have only one key", peer, prev.rule)
				}
				continue
			}
			if why := AuthConflict(prev.auth, r.Auth); why != "" {
				v.errf(path, where, "peer %s is also the peer of rule %q, and %s: strongSwan keeps one peer configuration (IKE_SA settings, authentication included) per peer and negotiates every rule's SAs inside it, so all rules to one peer must use the same authentication; give rule %q the authentication of rule %q", peer, prev.rule, why, r.Name, prev.rule)
			}
		}
	}
}

// AuthConflict says how two rules' authentication differ in what one
// IKE connection holds ("" when one connection can serve both). The
// preshared keys are compared, never shown.
func AuthConflict(a, b []ResolvedAuth) string {
	if len(a) == 0 || len(b) == 0 {
		return ""
	}
	x, y := a[0], b[0]
	switch {
	case x.Method != y.Method:
		return fmt.Sprintf("the rules use different authentication methods (%s and %s)", x.Method, y.Method)
	case x.Method == PSK:
		if !x.PSK.IsZero() && !y.PSK.IsZero() && x.PSK.Reveal() != y.PSK.Reveal() {
			return "the rules use different preshared keys"
		}
	case x.Method == Certificate:
		switch {
		case x.CAPath != y.CAPath:
			return fmt.Sprintf("the rules trust different CAs (%s and %s)", x.CAPath, y.CAPath)
		case x.CertPath != y.CertPath || x.KeyPath != y.KeyPath:
			return fmt.Sprintf("the rules present different certificates (%s and %s)", x.CertPath, y.CertPath)
		case x.PeerID != y.PeerID:
			return fmt.Sprintf("the rules expect different peer identities (peer_id %q and %q)", x.PeerID, y.PeerID)
		}
	}
	return ""
}

func policyIndex(a *Assigned) int {
	for i := range a.File.Policies {
		if &a.File.Policies[i] == a.Policy {
			return i
		}
	}
	return 0
}

// Peers returns the distinct IKE peers of a negotiate rule, in filter
// order: the tunnel endpoint, or each filter's other host.
func Peers(r ResolvedRule) []string {
	if r.Action.Action != Negotiate {
		return nil
	}
	if r.Tunnel.IsValid() {
		return []string{r.Tunnel.String()}
	}
	var out []string
	var seen map[string]bool // for many filters; a few are searched
	if len(r.Filters) > 8 {
		seen = make(map[string]bool, len(r.Filters))
	}
	for _, f := range r.Filters {
		h := otherSide(f).Host()
		switch {
		case seen != nil:
			if seen[h] {
				continue
			}
			seen[h] = true
		case slices.Contains(out, h):
			continue
		}
		out = append(out, h)
	}
	return out
}
