package importer

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// Options are what a script does not say.
type Options struct {
	// Addresses are this computer's IP addresses: what "me" means.
	// Scripts never name them; required.
	Addresses []string
	Name      string // endpoint.name (the computer name)
	// Policy picks the policy to import; default the one with assign=yes.
	Policy string
	// KeyPrefix names the key files: KeyPrefix.psk, KeyPrefix-2.psk, ...
	KeyPrefix string
	// LegacyAlgorithms keeps DES, 3DES and MD5 offers (as custom security,
	// which validate warns about) instead of leaving them out.
	LegacyAlgorithms bool
	// CA, Certificate and PrivateKey are the files a rootca= rule needs
	// (default ca.pem, host.pem, host.key next to the output).
	CA, Certificate, PrivateKey string
	// RemoteAccessInterface is the interface of conntype=dialup rules.
	RemoteAccessInterface string
}

type nsPolicy struct {
	name, desc, where string
	assign            bool
	assignWhere       string
	defaultRule       bool
	defaultWhere      string
	defaultSettings   []Note // set defaultrule settings swanmgr cannot use
	ikeNotes          []Note
	rules             []*nsRule
}

type nsList struct {
	name, desc, where string
	filters           []nsFilter
}

type nsFilter struct {
	where, desc  string
	src, dst     string
	proto        any
	sport, dport int
	mirrored     bool
	drop         string // why the filter cannot be carried ("" = it can)
	notes        []Note
}

type nsAction struct {
	name, desc, where string
	action            string
	out               FilterAction
	notes             []Note
}

type nsAuth struct {
	kind, value, where string
}

type nsRule struct {
	name, where, policy, list, action string
	tunnel, conntype, desc            string
	activate                          bool
	auths                             []nsAuth
}

type netsh struct {
	o        Options
	policies []*nsPolicy
	lists    []*nsList
	actions  []*nsAction
	notes    []Note
}

func (n *netsh) note(where string, lossy bool, format string, args ...any) {
	n.notes = append(n.notes, Note{Where: where, Lossy: lossy, Text: fmt.Sprintf(format, args...)})
}

// Netsh imports a script of `netsh ipsec static` commands.
func Netsh(file string, data []byte, o Options) (*Result, error) {
	cmds, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	if len(o.Addresses) == 0 {
		return nil, fmt.Errorf("importer: no address for \"me\": give this computer's IP address (scripts do not name it)")
	}
	for _, a := range o.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			return nil, fmt.Errorf("importer: address %q is not an IP address", a)
		}
	}
	n := &netsh{o: o}
	for _, c := range cmds {
		if err := n.command(c); err != nil {
			return nil, err
		}
	}
	return n.result(file)
}

var netshObjects = map[string][]string{
	"add policy":       {"name", "description", "mmpfs", "qmpermm", "mmlifetime", "activatedefaultrule", "pollinginterval", "assign", "mmsecmethods"},
	"set policy":       {"name", "guid", "newname", "description", "mmpfs", "qmpermm", "mmlifetime", "activatedefaultrule", "pollinginterval", "assign", "gponame", "mmsecmethods"},
	"add filterlist":   {"name", "description"},
	"add filter":       {"filterlist", "srcaddr", "dstaddr", "description", "protocol", "mirrored", "srcmask", "dstmask", "srcport", "dstport"},
	"add filteraction": {"name", "description", "qmpfs", "inpass", "soft", "action", "qmsecmethods"},
	"add rule":         {"name", "policy", "filterlist", "filteraction", "tunnel", "conntype", "activate", "description", "kerberos", "psk", "rootca"},
	"set defaultrule":  {"policy", "qmpfs", "activate", "qmsecmethods", "kerberos", "psk", "rootca"},
	"set store":        {"location", "domain"},
	"delete policy":    {"name", "all"},
	"delete all":       {},
}

func (n *netsh) command(c Command) error {
	switch c.Context {
	case "ipsec static", "":
	case "advfirewall consec":
		return errAt(c.File, c.Line, "an advfirewall consec rule: import those with `swanmgr import consec`")
	default:
		return errAt(c.File, c.Line, "%q commands are not IPsec policy commands this importer reads (netsh ipsec static)", c.Context)
	}
	key := c.Verb + " " + c.Object
	if c.Object == "" {
		key = c.Verb
	}
	names, ok := netshObjects[key]
	if !ok {
		return errAt(c.File, c.Line, "%q is not a command swanmgr import reads (add policy, add filterlist, add filter, add filteraction, add rule, set policy, set defaultrule, set store, delete all, delete policy)", "ipsec static "+key)
	}
	p, err := readParams(c, names, "rootca")
	if err != nil {
		return err
	}
	w := c.Where()
	switch key {
	case "add policy":
		return n.addPolicy(p, w)
	case "set policy":
		return n.setPolicy(p, w)
	case "add filterlist":
		name, err := p.required("name")
		if err != nil {
			return err
		}
		if n.list(name) != nil {
			return p.errf("filter list %q already exists", name)
		}
		n.lists = append(n.lists, &nsList{name: name, desc: p.str("description"), where: w})
	case "add filter":
		return n.addFilter(p, w)
	case "add filteraction":
		return n.addAction(p, w)
	case "add rule":
		return n.addRule(p, w)
	case "set defaultrule":
		return n.setDefaultRule(p, w)
	case "set store":
		loc, err := p.oneOf("location", "local", "local", "persistent", "domain")
		if err != nil {
			return err
		}
		switch loc {
		case "local":
			n.note(w, false, "set store location=local: the policy is imported as this computer's local policy")
		case "persistent":
			n.note(w, false, "set store location=persistent: Windows applied the persistent store at boot, before the local policy; swanmgr has one assigned policy, imported here")
		case "domain":
			n.note(w, false, "set store location=domain: the script wrote a Group Policy object in Active Directory; it is imported as this computer's own policy (swanmgr has no domain store)")
		}
	case "delete all":
		n.note(w, false, "delete all: the policies, filter lists and filter actions defined before this line are discarded, as netsh did; `swanmgr apply` replaces only what swanmgr loaded")
		n.policies, n.lists, n.actions = nil, nil, nil
	case "delete policy":
		name := p.str("name")
		if p.has("all") || strings.EqualFold(name, "all") {
			n.policies = nil
			return nil
		}
		for i, pol := range n.policies {
			if pol.name == name {
				n.policies = append(n.policies[:i], n.policies[i+1:]...)
				return nil
			}
		}
		return p.errf("policy %q does not exist", name)
	}
	return nil
}

func (n *netsh) policy(name string) *nsPolicy {
	for _, p := range n.policies {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (n *netsh) list(name string) *nsList {
	for _, l := range n.lists {
		if l.name == name {
			return l
		}
	}
	return nil
}

func (n *netsh) action(name string) *nsAction {
	for _, a := range n.actions {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (n *netsh) addPolicy(p *params, w string) error {
	name, err := p.required("name")
	if err != nil {
		return err
	}
	if n.policy(name) != nil {
		return p.errf("policy %q already exists", name)
	}
	pol := &nsPolicy{name: name, where: w}
	n.policies = append(n.policies, pol)
	return n.policySettings(pol, p, w)
}

func (n *netsh) setPolicy(p *params, w string) error {
	if p.has("guid") && !p.has("name") {
		return p.errf("guid= names a policy by its GUID, which a script cannot know: use name=")
	}
	name, err := p.required("name")
	if err != nil {
		return err
	}
	pol := n.policy(name)
	if pol == nil {
		return p.errf("policy %q does not exist", name)
	}
	if nn := p.str("newname"); nn != "" {
		if n.policy(nn) != nil {
			return p.errf("policy %q already exists", nn)
		}
		for _, r := range pol.rules {
			r.policy = nn
		}
		pol.name = nn
	}
	if p.has("gponame") {
		n.note(w, false, "gponame: the Group Policy object is not used; the policy is imported as this computer's own")
	}
	return n.policySettings(pol, p, w)
}

func (n *netsh) policySettings(pol *nsPolicy, p *params, w string) error {
	if p.has("description") {
		pol.desc = p.str("description")
	}
	assign, err := p.yesNo("assign", pol.assign)
	if err != nil {
		return err
	}
	if assign && !pol.assign || p.has("assign") {
		pol.assign, pol.assignWhere = assign, w
	}
	def, err := p.yesNo("activatedefaultrule", pol.defaultRule)
	if err != nil {
		return err
	}
	if p.has("activatedefaultrule") {
		pol.defaultRule, pol.defaultWhere = def, w
	}
	if _, err := p.yesNo("mmpfs", false); err != nil {
		return err
	}
	if _, err := p.number("qmpermm", 0, 0, 1<<31); err != nil {
		return err
	}
	if _, err := p.number("mmlifetime", 0, 1, 1<<31); err != nil {
		return err
	}
	if _, err := p.number("pollinginterval", 0, 0, 1<<31); err != nil {
		return err
	}
	ike := "swanmgr's IKE_SA always uses IKEv2 with aes256gcm16-aes128gcm16-prfsha384-prfsha256-x25519-ecp384 and charon's rekeying (the policy format has no key exchange settings)"
	for _, k := range []string{"mmsecmethods", "mmpfs", "mmlifetime", "qmpermm"} {
		if !p.has(k) {
			continue
		}
		extra := ""
		if k == "mmsecmethods" {
			if legacy := legacyMM(p.str(k)); legacy != "" {
				extra = " (the script's " + legacy + " are not offered)"
			}
		}
		pol.ikeNotes = append(pol.ikeNotes, Note{Where: w, Text: fmt.Sprintf("%s (main mode) is not carried over: %s%s", k, ike, extra)})
	}
	if p.has("pollinginterval") {
		pol.ikeNotes = append(pol.ikeNotes, Note{Where: w, Text: "pollinginterval is not needed: `swanmgr apply` (or the agent) assigns the policy when it changes"})
	}
	return nil
}

// legacyMM names the weak algorithms of a main-mode method list
// ("3DES-SHA1-2 DES-MD5-1").
func legacyMM(s string) string {
	var weak []string
	seen := map[string]bool{}
	for _, m := range strings.Fields(strings.ToUpper(s)) {
		for i, part := range strings.Split(m, "-") {
			name := part
			if i == 2 {
				name = "DH group " + part
				if part != "1" && part != "2" {
					continue
				}
			} else if part != "DES" && part != "3DES" && part != "MD5" {
				continue
			}
			if !seen[name] {
				seen[name] = true
				weak = append(weak, name)
			}
		}
	}
	return strings.Join(weak, ", ")
}

func (n *netsh) addFilter(p *params, w string) error {
	name, err := p.required("filterlist")
	if err != nil {
		return err
	}
	l := n.list(name)
	if l == nil {
		l = &nsList{name: name, where: w}
		n.lists = append(n.lists, l)
		n.note(w, false, "filter list %q did not exist: created, as netsh does", name)
	}
	f := nsFilter{where: w, desc: p.str("description")}
	for _, side := range []struct {
		addr, mask string
		out        *string
	}{{"srcaddr", "srcmask", &f.src}, {"dstaddr", "dstmask", &f.dst}} {
		v, err := p.required(side.addr)
		if err != nil {
			return err
		}
		a, drop, note, err := address(v, p.str(side.mask), p.has(side.mask))
		if err != nil {
			return p.errf("%s=%q: %v", side.addr, v, err)
		}
		if drop != "" && f.drop == "" {
			f.drop = side.addr + "=" + strconv.Quote(v) + ": " + drop
		}
		if note != "" {
			f.notes = append(f.notes, Note{Where: w, Text: side.addr + "=" + strconv.Quote(v) + ": " + note})
		}
		*side.out = a
	}
	proto, err := p.oneOfOrNumber("protocol")
	if err != nil {
		return err
	}
	f.proto = proto
	if proto == "raw" {
		f.proto = 255
		f.notes = append(f.notes, Note{Where: w, Text: "protocol=RAW is IP protocol 255 (raw IP), written as protocol = 255"})
	}
	for _, pp := range []struct {
		k   string
		out *int
	}{{"srcport", &f.sport}, {"dstport", &f.dport}} {
		v, err := p.number(pp.k, 0, 0, 65535)
		if err != nil {
			return err
		}
		if v != 0 && proto != "tcp" && proto != "udp" {
			return p.errf("%s=%d needs protocol=TCP or UDP", pp.k, v)
		}
		*pp.out = int(v)
	}
	if f.mirrored, err = p.yesNo("mirrored", true); err != nil {
		return err
	}
	l.filters = append(l.filters, f)
	return nil
}

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

func (n *netsh) addAction(p *params, w string) error {
	name, err := p.required("name")
	if err != nil {
		return err
	}
	if n.action(name) != nil {
		return p.errf("filter action %q already exists", name)
	}
	act, err := p.oneOf("action", "negotiate", "permit", "block", "negotiate")
	if err != nil {
		return err
	}
	a := &nsAction{name: name, desc: p.str("description"), where: w, action: act}
	a.out = FilterAction{Name: name, Description: a.desc, Action: act}
	qmpfs, err := p.yesNo("qmpfs", false)
	if err != nil {
		return err
	}
	inpass, err := p.yesNo("inpass", false)
	if err != nil {
		return err
	}
	soft, err := p.yesNo("soft", false)
	if err != nil {
		return err
	}
	var offers []offer
	if p.has("qmsecmethods") {
		if offers, err = parseOffers(p.str("qmsecmethods")); err != nil {
			return p.errf("qmsecmethods: %v", err)
		}
	}
	add := func(lossy bool, format string, args ...any) {
		a.notes = append(a.notes, Note{Where: w, Lossy: lossy, Text: fmt.Sprintf("filter action %q: ", name) + fmt.Sprintf(format, args...)})
	}
	if act != "negotiate" {
		for _, k := range []string{"qmpfs", "inpass", "soft", "qmsecmethods"} {
			if p.has(k) {
				add(false, "%s is ignored with action=%s, as Windows ignores it", k, act)
			}
		}
		n.actions = append(n.actions, a)
		return nil
	}
	if inpass {
		add(true, "inpass=yes (\"Accept unsecured communication, but always respond using IPSec\") has no strongSwan equivalent: charon installs the inbound and outbound policies of an SA together, so clear inbound traffic is dropped. Imported as accept_unsecured = false (require IPsec both ways)")
	}
	if soft {
		add(true, "soft=yes (\"Allow unsecured communication with non-IPSec-aware computer\") has no strongSwan equivalent: charon cannot fall back to clear text when a peer does not answer IKE. Imported as fallback_to_clear = false; add a permit rule for the hosts that must be reached in clear")
	}
	a.out.PFS = qmpfs
	if qmpfs {
		add(false, "qmpfs=yes: session key PFS with x25519 (Windows used the main mode's Diffie-Hellman group)")
	}
	mapOffers(&a.out, offers, n.o.LegacyAlgorithms, add)
	n.actions = append(n.actions, a)
	return nil
}

func (n *netsh) addRule(p *params, w string) error {
	r := &nsRule{where: w, name: p.str("name"), desc: p.str("description")}
	var err error
	if r.policy, err = p.required("policy"); err != nil {
		return err
	}
	pol := n.policy(r.policy)
	if pol == nil {
		return p.errf("policy %q does not exist (add policy first)", r.policy)
	}
	if r.list, err = p.required("filterlist"); err != nil {
		return err
	}
	if n.list(r.list) == nil {
		return p.errf("filter list %q does not exist", r.list)
	}
	if r.action, err = p.required("filteraction"); err != nil {
		return err
	}
	if n.action(r.action) == nil {
		return p.errf("filter action %q does not exist", r.action)
	}
	for _, o := range pol.rules {
		if r.name != "" && o.name == r.name {
			return p.errf("rule %q already exists in policy %q", r.name, r.policy)
		}
	}
	r.tunnel = p.str("tunnel")
	if r.conntype, err = p.oneOf("conntype", "all", "lan", "dialup", "all"); err != nil {
		return err
	}
	if r.activate, err = p.yesNo("activate", true); err != nil {
		return err
	}
	if r.auths, err = authMethods(p, w); err != nil {
		return err
	}
	pol.rules = append(pol.rules, r)
	return nil
}

// authMethods reads kerberos=, psk= and rootca= in the order given (the
// order of preference).
func authMethods(p *params, w string) ([]nsAuth, error) {
	var out []nsAuth
	rootcas := p.multi["rootca"]
	ri := 0
	seen := map[string]bool{}
	for _, k := range p.order {
		switch k {
		case "kerberos":
			if seen[k] {
				continue
			}
			seen[k] = true
			yes, err := p.yesNo("kerberos", false)
			if err != nil {
				return nil, err
			}
			if yes {
				out = append(out, nsAuth{kind: "kerberos", where: w})
			}
		case "psk":
			if strings.TrimSpace(p.str("psk")) == "" {
				return nil, p.errf("psk is empty")
			}
			out = append(out, nsAuth{kind: "psk", value: p.str("psk"), where: w})
		case "rootca":
			v := rootcas[ri]
			ri++
			if strings.TrimSpace(v) == "" {
				return nil, p.errf("rootca is empty")
			}
			out = append(out, nsAuth{kind: "rootca", value: v, where: w})
		}
	}
	return out, nil
}

func (n *netsh) setDefaultRule(p *params, w string) error {
	name, err := p.required("policy")
	if err != nil {
		return err
	}
	pol := n.policy(name)
	if pol == nil {
		return p.errf("policy %q does not exist", name)
	}
	act, err := p.yesNo("activate", pol.defaultRule)
	if err != nil {
		return err
	}
	if p.has("activate") {
		pol.defaultRule, pol.defaultWhere = act, w
	}
	if _, err := p.yesNo("qmpfs", false); err != nil {
		return err
	}
	if _, err := authMethods(p, w); err != nil {
		return err
	}
	if p.has("qmsecmethods") {
		if _, err := parseOffers(p.str("qmsecmethods")); err != nil {
			return p.errf("qmsecmethods: %v", err)
		}
	}
	for _, k := range []string{"qmpfs", "qmsecmethods", "kerberos", "psk", "rootca"} {
		if p.has(k) {
			pol.defaultSettings = append(pol.defaultSettings, Note{Where: w, Lossy: true,
				Text: fmt.Sprintf("set defaultrule %s: swanmgr's default response rule has no settings of its own; it answers with the authentication and security of the policy's first negotiate rule", k)})
		}
	}
	return nil
}

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
				res.Notes = append(res.Notes, f.notes...)
				if f.drop != "" {
					continue // reported by rule
				}
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
		if n.action(r.action).action == "negotiate" && !rule.Disabled {
			negotiate = true
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
	sort.SliceStable(res.Notes, func(i, j int) bool { return lineOf(res.Notes[i].Where) < lineOf(res.Notes[j].Where) })
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
		if f.drop != "" {
			*notes = append(*notes, Note{Where: f.where, Lossy: true, Text: fmt.Sprintf("filter list %q: %s", l.name, f.drop)})
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

// splitRootCA separates the CA name from the certmap: and excludecaname:
// options at its end.
func splitRootCA(v string) (ca string, certmap, exclude bool) {
	words := strings.Fields(v)
	var keep []string
	for _, w := range words {
		l := strings.ToLower(w)
		switch {
		case strings.HasPrefix(l, "certmap:"):
			certmap = strings.HasPrefix(strings.TrimPrefix(l, "certmap:"), "y")
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
