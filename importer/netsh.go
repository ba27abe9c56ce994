package importer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/internal/suggest"
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
	if err := checkAddresses(o.Addresses); err != nil {
		return nil, err
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
		var known []string
		for k := range netshObjects {
			known = append(known, k)
		}
		if hint := closest(key, known); hint != "" {
			return errAt(c.File, c.Line, "%q is not a command swanmgr import reads (did you mean %q?)", "ipsec static "+key, hint)
		}
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
	if n.list(r.list) == nil && !n.builtinList(r.list, w) {
		return p.errf("filter list %q does not exist%s", r.list, didYouMean(r.list, n.listNames()))
	}
	if r.action, err = p.required("filteraction"); err != nil {
		return err
	}
	if n.action(r.action) == nil && !n.builtinAction(r.action, w) {
		return p.errf("filter action %q does not exist%s", r.action, didYouMean(r.action, n.actionNames()))
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

func (n *netsh) listNames() []string {
	var out []string
	for _, l := range n.lists {
		out = append(out, l.name)
	}
	return out
}

func (n *netsh) actionNames() []string {
	var out []string
	for _, a := range n.actions {
		out = append(out, a.name)
	}
	return out
}

func didYouMean(s string, names []string) string {
	if c := closest(s, names); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// closest is the candidate nearest to s by edit distance, if it is near.
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	sort.Strings(candidates)
	for _, c := range candidates {
		if d := suggest.Distance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// builtinList adds one of the filter lists Windows ships with, when a rule
// names it without the script creating it.
func (n *netsh) builtinList(name, w string) bool {
	var f nsFilter
	switch name {
	case "All IP Traffic":
		f = nsFilter{src: "me", dst: "any", mirrored: true}
	case "All ICMP Traffic":
		f = nsFilter{src: "me", dst: "any", proto: "icmp", mirrored: true}
	default:
		return false
	}
	f.where = w
	n.lists = append(n.lists, &nsList{name: name, where: w, filters: []nsFilter{f}})
	n.note(w, false, "filter list %q is one Windows ships with: me to any address%s, mirrored", name, map[bool]string{true: ", ICMP"}[f.proto != nil])
	return true
}

// builtinAction adds one of the filter actions Windows ships with.
func (n *netsh) builtinAction(name, w string) bool {
	var script string
	switch name {
	case "Permit":
		script = "action=permit"
	case "Request Security (Optional)":
		script = "action=negotiate inpass=yes soft=yes"
	case "Require Security":
		script = "action=negotiate inpass=yes soft=no"
	default:
		return false
	}
	file, line := w, 0
	if i := strings.LastIndexByte(w, ':'); i >= 0 {
		file, line = w[:i], lineOf(w)
	}
	c := Command{File: file, Line: line, Verb: "add", Object: "filteraction", Args: []Arg{{Tag: "name", Value: name}}}
	for _, kv := range strings.Fields(script) {
		k, v, _ := strings.Cut(kv, "=")
		c.Args = append(c.Args, Arg{Tag: k, Value: v})
	}
	p, err := readParams(c, netshObjects["add filteraction"])
	if err != nil || n.addAction(p, w) != nil {
		return false
	}
	methods := ""
	if name != "Permit" {
		methods = ", Windows' default methods"
	}
	n.note(w, false, "filter action %q is one Windows ships with (%s%s)", name, script, methods)
	return true
}
