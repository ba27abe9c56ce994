package model

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ValidateOptions tune validation.
type ValidateOptions struct {
	// InsecureSecrets accepts secret and key files readable by group or
	// others (as ssh refuses them, swanmgr does by default).
	InsecureSecrets bool
	// LookupEnv reads secret_env variables; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Now is the time certificates are checked against; nil means time.Now.
	Now func() time.Time
	// Reuse, for ParseValidate, holds decoded files of a policy folder
	// read before (see Reuse); nil decodes every file.
	Reuse *Reuse
}

func (o ValidateOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// MinPSKLength is the length under which a preshared key draws a warning.
const MinPSKLength = 20

// Validate checks the meaning of a loaded file and resolves its assigned
// policy. It collects every problem; the error, if any, is Problems.
// Warnings are returned even when the file is valid.
func Validate(f *File, o ValidateOptions) (*Assigned, []Problem, error) {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	v := &validator{f: f, o: o}
	a := v.run()
	v.countBadFiles()
	if len(v.errs) > 0 {
		return nil, v.warns, v.errs
	}
	return a, v.warns, nil
}

type validator struct {
	f     *File
	o     ValidateOptions
	errs  Problems
	warns []Problem
	// Files and variables read, once each: many rules share a key file.
	okFiles map[string]bool   // passed secretFileOK
	data    map[string][]byte // read by readFile
	// badFiles: secret and key files secretFileOK refused, with the
	// problem it reported for the first rule naming each: thousands of
	// rules sharing one key file draw one message, with their number.
	badFiles map[string]*badFile
	inputs   []Input
	// certsChecked: certificate material already checked (ca, certificate,
	// key, identity), so that rules sharing it draw one message.
	certsChecked map[string]bool
	// secretFiles: each secret_file as written, resolved, and the source
	// it is named by (thousands of rules name one).
	secretFiles map[string]secretFile
}

// secretFile is a secret_file as the validator resolved it.
type secretFile struct{ path, src string }

func (v *validator) errf(path, where, format string, args ...any) {
	v.errs = append(v.errs, v.f.Problem(v.f.line(path), where, fmt.Sprintf(format, args...), false))
}

// badFile is a refused file's first problem (an index into errs) and the
// number of rules after that one that name it.
type badFile struct{ problem, more int }

// countBadFiles adds to each refused file's problem how many more rules
// name it.
func (v *validator) countBadFiles() {
	for _, b := range v.badFiles {
		if b.more > 0 {
			what := "rules name"
			if b.more == 1 {
				what = "rule names"
			}
			v.errs[b.problem].Msg += fmt.Sprintf(" (%d more %s it too)", b.more, what)
		}
	}
}

// at is "file:line" of an indexed key path, for a message that points at
// a second place.
func (v *validator) at(path string) string {
	file, line := v.f.Locate(v.f.line(path))
	if line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

func (v *validator) warnf(path, where, format string, args ...any) {
	v.warns = append(v.warns, v.f.Problem(v.f.line(path), where, fmt.Sprintf(format, args...), true))
}

func (v *validator) run() *Assigned {
	f := v.f
	ep := v.endpoint()
	lists := v.filterLists(ep)
	actions := v.filterActions()

	names := map[string]int{}
	for i, p := range f.Policies {
		path := fmt.Sprintf("policy[%d]", i)
		if p.Name == "" {
			v.errf(path, fmt.Sprintf("policy %d", i+1), "name is required")
			continue
		}
		if j, dup := names[p.Name]; dup {
			v.errf(path+".name", fmt.Sprintf("policy %q", p.Name), "duplicate name (also policy %d)", j+1)
		}
		names[p.Name] = i
	}
	if len(f.Policies) == 0 {
		v.errf("", "", "no [[policy]]: a policy file needs at least one policy")
		return nil
	}
	assigned := -1
	if f.Assign == "" {
		if len(f.Policies) == 1 {
			assigned = 0
		} else {
			v.errf("assign", "", "assign is required when the file has %d policies (one of %s)", len(f.Policies), quoteList(policyNames(f)))
		}
	} else if i, ok := names[f.Assign]; ok {
		assigned = i
	} else {
		v.errf("assign", "", "assign: policy %q not found%s", f.Assign, didYouMean(f.Assign, policyNames(f)))
	}

	var out *Assigned
	for i := range f.Policies {
		rules := v.policy(i, ep, lists, actions, i == assigned)
		if i == assigned {
			out = &Assigned{File: f, Endpoint: ep, Policy: &f.Policies[i], Rules: rules, Inputs: v.inputs}
		}
	}
	if out != nil {
		v.crossRuleChecks(out)
	}
	return out
}

func policyNames(f *File) []string {
	var ns []string
	for _, p := range f.Policies {
		ns = append(ns, p.Name)
	}
	return ns
}

func quoteList(ns []string) string {
	q := make([]string, len(ns))
	for i, n := range ns {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func didYouMean(s string, candidates []string) string {
	if c := closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// identityRe accepts what swanmgr writes as an IKE identity: no spaces
// at the ends, no quotes or braces that would break swanctl.conf.
var identityRe = regexp.MustCompile(`^[^\s"{}=#][^"{}#\n]*[^\s"{}=#]$|^[^\s"{}=#]$`)

func (v *validator) endpoint() Endpoint {
	ep := v.f.Endpoint
	// Addresses are normalised in a copy: validation does not change the File.
	ep.Addresses = append([]string(nil), ep.Addresses...)
	if len(ep.Addresses) == 0 {
		v.errf("endpoint", "endpoint", "addresses is required: list this computer's IP addresses (\"My IP address\")")
	}
	for i, a := range ep.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			v.errf("endpoint.addresses", "endpoint", "addresses[%d] %q is not an IP address", i, a)
			continue
		}
		ep.Addresses[i] = ip.String()
	}
	if ep.ID == "" && len(ep.Addresses) > 0 {
		ep.ID = ep.Addresses[0]
	}
	if ep.ID != "" && !identityRe.MatchString(ep.ID) {
		v.errf("endpoint.id", "endpoint", "id %q is not a usable IKE identity", ep.ID)
	}
	for _, k := range []struct{ key, val string }{{"lan_interface", ep.LANInterface}, {"remote_access_interface", ep.RemoteAccessInterface}} {
		if k.val != "" && !ifaceRe.MatchString(k.val) {
			v.errf("endpoint."+k.key, "endpoint", "%s %q is not an interface name", k.key, k.val)
		}
	}
	return ep
}

var ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)

type listInfo struct {
	list    *FilterList
	filters []ResolvedFilter
	ok      bool
}

func (v *validator) filterLists(ep Endpoint) map[string]*listInfo {
	checked := v.checkFilters(ep)
	out := make(map[string]*listInfo, len(v.f.FilterLists))
	first := make(map[string]int, len(v.f.FilterLists))
	for i := range v.f.FilterLists {
		fl := &v.f.FilterLists[i]
		c := &checked[i]
		if fl.Name == "" {
			v.errf(c.path, fmt.Sprintf("filter_list %d", i+1), "name is required")
			continue
		}
		if _, dup := out[fl.Name]; dup {
			v.errf(c.path+".name", c.where, "duplicate name (first at %s)", v.at(fmt.Sprintf("filter_list[%d].name", first[fl.Name])))
			continue
		}
		first[fl.Name] = i
		info := &listInfo{list: fl, ok: c.ok, filters: c.filters}
		out[fl.Name] = info
		if len(fl.Filters) == 0 {
			v.errf(c.path, c.where, "has no [[filter_list.filter]]")
			info.ok = false
		}
		v.errs = append(v.errs, c.errs...)
	}
	return out
}

func (v *validator) filter(path, where string, flt Filter, ep Endpoint) (ResolvedFilter, bool) {
	n := len(v.errs)
	rf := ResolvedFilter{Line: v.f.line(path), SrcPort: AnyPort, DstPort: AnyPort}
	rf.Src = v.addr(path+".source", where, "source", flt.Source, ep)
	rf.Dst = v.addr(path+".destination", where, "destination", flt.Destination, ep)
	if rf.Src.Kind == AddrMe && rf.Dst.Kind == AddrMe && flt.Source != "" {
		v.errf(path, where, "source and destination are both this computer")
	}
	if rf.Src.Prefix.IsValid() && rf.Dst.Prefix.IsValid() && rf.Src.Prefix.Addr().Is4() != rf.Dst.Prefix.Addr().Is4() {
		v.errf(path, where, "source %s and destination %s are of different IP families", rf.Src, rf.Dst)
	}
	rf.Proto, rf.ProtoKW = v.protocol(path+".protocol", where, flt.Protocol)
	rf.SrcPort = v.port(path+".source_port", where, "source_port", flt.SourcePort)
	rf.DstPort = v.port(path+".destination_port", where, "destination_port", flt.DestinationPort)
	if (rf.SrcPort != AnyPort || rf.DstPort != AnyPort) && rf.ProtoKW != "tcp" && rf.ProtoKW != "udp" {
		v.errf(path, where, "ports need protocol \"tcp\" or \"udp\" (protocol is %s)", protoText(flt.Protocol))
	}
	if rf.Proto == 1 && (is6(rf.Src) || is6(rf.Dst)) {
		v.errf(path+".protocol", where, "protocol icmp (1) never matches IPv6 traffic: use \"ipv6-icmp\" (58)")
	}
	if flt.Mirrored != nil && !*flt.Mirrored {
		v.errf(path+".mirrored", where, "mirrored = false has no strongSwan equivalent: every strongSwan SA and shunt covers both directions; remove the key (filters are always mirrored)")
	}
	return rf, len(v.errs) == n
}

func is6(a Addr) bool { return a.Prefix.IsValid() && !a.Prefix.Addr().Is4() }

// typeText names the TOML type of a loosely decoded value.
func typeText(v any) string { return tomlTypeName(fmt.Sprintf("%T", v)) }

func protoText(p any) string {
	if p == nil {
		return "any"
	}
	return fmt.Sprintf("%v", p)
}

var dnsRe = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$`)

func (v *validator) addr(path, where, key, s string, ep Endpoint) Addr {
	// Invalid until understood: an address in error must not read as "me"
	// (the zero kind) and draw follow-up errors that are not true.
	a := Addr{Text: s, Kind: AddrInvalid}
	switch {
	case s == "":
		v.errf(path, where, "%s is required (\"me\", \"any\", an address, a subnet or a DNS name)", key)
	case strings.EqualFold(s, "me"):
		a.Kind = AddrMe
	case strings.EqualFold(s, "any"):
		a.Kind = AddrAny
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			v.errf(path, where, "%s %q is not a valid subnet", key, s)
			break
		}
		if p.Masked() != p {
			v.errf(path, where, "%s %q has host bits set (did you mean %q?)", key, s, p.Masked().String())
			break
		}
		a.Kind, a.Prefix = AddrSubnet, p
		if p.IsSingleIP() {
			a.Kind = AddrHost
		}
	default:
		if ip, err := netip.ParseAddr(s); err == nil {
			if ip.Zone() != "" {
				v.errf(path, where, "%s %q: zoned addresses are not supported", key, s)
				break
			}
			a.Kind, a.Prefix = AddrHost, netip.PrefixFrom(ip, ip.BitLen())
			break
		}
		if looksNumeric(s) || !dnsRe.MatchString(s) {
			v.errf(path, where, "%s %q is not an address, subnet, DNS name, \"me\" or \"any\"", key, s)
			break
		}
		a.Kind, a.Name = AddrDNS, s
	}
	if a.Kind == AddrInvalid {
		return a
	}
	// One of this endpoint's own addresses means "me".
	if a.Kind == AddrHost {
		for _, mine := range ep.Addresses {
			if mine == a.Prefix.Addr().String() {
				a.Kind = AddrMe
			}
		}
	}
	return a
}

func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.:") == ""
}

var protoNames = map[string]int{"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "gre": 47, "sctp": 132}

func (v *validator) protocol(path, where string, p any) (int, string) {
	switch t := p.(type) {
	case nil:
		return 0, ""
	case string:
		s := strings.ToLower(t)
		if s == "any" || s == "" {
			return 0, ""
		}
		if n, ok := protoNames[s]; ok {
			if s == "icmpv6" {
				s = "ipv6-icmp"
			}
			return n, s
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 255 {
			return protoNumber(n)
		}
		v.errf(path, where, "protocol %q is not \"any\", \"tcp\", \"udp\", \"icmp\" or a number 0-255", t)
	case int64:
		if t >= 0 && t <= 255 {
			return protoNumber(int(t))
		}
		v.errf(path, where, "protocol %d is out of range 0-255", t)
	default:
		v.errf(path, where, "protocol must be a string or a number, not %s", typeText(p))
	}
	return 0, ""
}

func protoNumber(n int) (int, string) {
	for name, num := range protoNames {
		if num == n && name != "icmpv6" {
			return n, name
		}
	}
	return n, ""
}

func (v *validator) port(path, where, key string, p any) int {
	switch t := p.(type) {
	case nil:
		return AnyPort
	case string:
		if strings.EqualFold(t, "any") {
			return AnyPort
		}
		if n, err := strconv.Atoi(t); err == nil && n >= 0 && n <= 65535 {
			return portOrAny(n)
		}
		v.errf(path, where, "%s %q is not a port 0-65535 or \"any\"", key, t)
	case int64:
		if t >= 0 && t <= 65535 {
			return portOrAny(int(t))
		}
		v.errf(path, where, "%s %d is out of range 0-65535", key, t)
	default:
		v.errf(path, where, "%s must be a number or \"any\", not %s", key, typeText(p))
	}
	return AnyPort
}

// portOrAny maps port 0 to any port, as Windows does.
func portOrAny(n int) int {
	if n == 0 {
		return AnyPort
	}
	return n
}

type actionInfo struct {
	action ResolvedAction
	ok     bool
}

func (v *validator) filterActions() map[string]*actionInfo {
	out := map[string]*actionInfo{}
	first := map[string]int{}
	for i := range v.f.FilterActions {
		fa := &v.f.FilterActions[i]
		path := "filter_action[" + strconv.Itoa(i) + "]"
		if fa.Name == "" {
			v.errf(path, fmt.Sprintf("filter_action %d", i+1), "name is required")
			continue
		}
		where := "filter_action " + strconv.Quote(fa.Name)
		if _, dup := out[fa.Name]; dup {
			v.errf(path+".name", where, "duplicate name (first at %s)", v.at(fmt.Sprintf("filter_action[%d].name", first[fa.Name])))
			continue
		}
		first[fa.Name] = i
		n := len(v.errs)
		ra := v.action(path, where, fa)
		out[fa.Name] = &actionInfo{action: ra, ok: len(v.errs) == n}
	}
	return out
}

func (v *validator) action(path, where string, fa *FilterAction) ResolvedAction {
	ra := ResolvedAction{Name: fa.Name, Action: fa.Action, Security: fa.Security}
	ra.Guard = fa.Action != Permit && (fa.Guard == nil || *fa.Guard)
	if fa.Action == Permit && fa.Guard != nil {
		v.errf(path+".guard", where, "guard applies to \"negotiate\" and \"block\" filter actions (a permit rule sends in clear by definition); remove it")
	}
	switch fa.Action {
	case Permit, Block, Negotiate:
	case "":
		v.errf(path, where, "action is required (\"permit\", \"block\" or \"negotiate\")")
	default:
		v.errf(path+".action", where, "action %q is not \"permit\", \"block\" or \"negotiate\"%s", fa.Action, didYouMean(string(fa.Action), []string{"permit", "block", "negotiate"}))
	}
	if fa.FallbackToClear != nil && *fa.FallbackToClear {
		v.errf(path+".fallback_to_clear", where, "fallback_to_clear = true (\"Allow unsecured communication with non-IPSec-aware computer\") has no strongSwan equivalent: charon cannot fall back to clear text when a peer does not answer IKE. Closest safe choice: keep it false and add a permit rule for the hosts that must be reached in clear")
	}
	if fa.AcceptUnsecured != nil && *fa.AcceptUnsecured {
		v.errf(path+".accept_unsecured", where, "accept_unsecured = true (\"Accept unsecured communication, but always respond using IPSec\") has no strongSwan equivalent: charon installs the inbound and outbound policies of an SA together, so clear inbound traffic is dropped. Closest safe choice: keep it false (require IPsec both ways)")
	}
	custom := len(fa.ESPEncryption) > 0 || len(fa.ESPIntegrity) > 0 || len(fa.AHIntegrity) > 0 ||
		fa.PFSGroup != "" || fa.RekeySeconds != nil || fa.RekeyKilobytes != nil
	if fa.Action != Negotiate {
		if fa.Security != "" || fa.PFS != nil || custom {
			v.errf(path, where, "security settings (security, pfs, esp_*, ah_integrity, pfs_group, rekey_*) apply only to action = \"negotiate\"")
		}
		return ra
	}
	if ra.Security == "" {
		ra.Security = High
	}
	ra.PFS = fa.PFS != nil && *fa.PFS
	switch ra.Security {
	case High:
		ra.ESPEnc = []string{"aes256gcm16"}
	case Medium:
		ra.ESPEnc = []string{"aes256gmac"}
	case Custom:
	default:
		v.errf(path+".security", where, "security %q is not \"high\", \"medium\" or \"custom\"%s", fa.Security, didYouMean(string(fa.Security), []string{string(High), string(Medium), string(Custom)}))
	}
	if ra.Security != Custom {
		if custom {
			v.errf(path, where, "esp_encryption, esp_integrity, ah_integrity, pfs_group and rekey_* need security = \"custom\" (security is %q)", ra.Security)
		}
		if ra.PFS {
			ra.PFSGroup = "x25519"
		}
		return ra
	}

	// security = "custom"
	for _, a := range fa.ESPEncryption {
		a = strings.ToLower(a)
		switch {
		case aeadAlgs[a] || encAlgs[a]:
		default:
			v.errf(path+".esp_encryption", where, "esp_encryption %q is not a strongSwan ESP encryption keyword%s", a, didYouMean(a, keys(aeadAlgs, encAlgs)))
		}
		ra.ESPEnc = append(ra.ESPEnc, a)
	}
	for _, a := range fa.ESPIntegrity {
		a = strings.ToLower(a)
		if !integAlgs[a] {
			v.errf(path+".esp_integrity", where, "esp_integrity %q is not a strongSwan integrity keyword%s", a, didYouMean(a, keys(integAlgs)))
		}
		ra.ESPInteg = append(ra.ESPInteg, a)
	}
	for _, a := range fa.AHIntegrity {
		a = strings.ToLower(a)
		if !integAlgs[a] {
			v.errf(path+".ah_integrity", where, "ah_integrity %q is not a strongSwan integrity keyword%s", a, didYouMean(a, keys(integAlgs)))
		}
		ra.AHInteg = append(ra.AHInteg, a)
	}
	var aead, classic, unknown bool
	for _, a := range ra.ESPEnc {
		switch {
		case aeadAlgs[a]:
			aead = true
		case encAlgs[a]:
			classic = true
		default:
			unknown = true
		}
	}
	switch {
	case unknown:
		// reported above; the combination cannot be judged
	case len(ra.AHInteg) > 0 && (len(ra.ESPEnc) > 0 || len(ra.ESPInteg) > 0):
		v.errf(path, where, "ah_integrity cannot be combined with esp_encryption/esp_integrity: strongSwan 5.9 negotiates either AH or ESP for an SA, not both")
	case len(ra.AHInteg) == 0 && len(ra.ESPEnc) == 0:
		v.errf(path, where, "security = \"custom\" needs esp_encryption (ESP) or ah_integrity (AH)")
	case aead && classic:
		v.errf(path+".esp_encryption", where, "esp_encryption mixes AEAD algorithms (like aes256gcm16) with classic ones (like aes256); strongSwan needs them in separate proposals: use one kind")
	case aead && len(ra.ESPInteg) > 0:
		v.errf(path+".esp_integrity", where, "esp_integrity must be empty with AEAD esp_encryption (%s): AEAD algorithms carry their own integrity", strings.Join(ra.ESPEnc, ", "))
	case classic && len(ra.ESPInteg) == 0:
		v.errf(path+".esp_encryption", where, "esp_encryption %s needs esp_integrity (e.g. [\"sha256\"]): ESP without integrity protection is unsafe", strings.Join(ra.ESPEnc, ", "))
	}
	if len(ra.AHInteg) > 0 {
		v.warnf(path+".ah_integrity", where, "AH authenticates the IP header, so it cannot cross NAT; use ESP (esp_encryption) if NAT may sit between the endpoints")
	}
	if fa.PFSGroup != "" {
		g := strings.ToLower(fa.PFSGroup)
		if !dhGroups[g] {
			v.errf(path+".pfs_group", where, "pfs_group %q is not a strongSwan key exchange group%s", fa.PFSGroup, didYouMean(g, keys(dhGroups)))
		}
		if fa.PFS != nil && !*fa.PFS {
			v.errf(path+".pfs_group", where, "pfs_group is set but pfs = false: set pfs = true or remove pfs_group")
		}
		ra.PFS = true
		ra.PFSGroup = g
	} else if ra.PFS {
		ra.PFSGroup = "x25519"
	}
	for _, a := range append(append(append([]string{}, ra.ESPEnc...), ra.ESPInteg...), append(ra.AHInteg, ra.PFSGroup)...) {
		if weakAlgs[a] {
			v.warnf(path, where, "%s is weak; it is used only because security = \"custom\" asks for it", a)
		}
	}
	if fa.RekeySeconds != nil {
		s := *fa.RekeySeconds
		if s < 60 || s > math.MaxInt32 {
			v.errf(path+".rekey_seconds", where, "rekey_seconds %d must be between 60 and %d", s, math.MaxInt32)
		}
		ra.RekeySecs = s
	}
	if fa.RekeyKilobytes != nil {
		kb := *fa.RekeyKilobytes
		if kb < 1 || kb > math.MaxInt64/1024 {
			v.errf(path+".rekey_kilobytes", where, "rekey_kilobytes %d must be positive", kb)
		} else if kb < 1024 {
			v.warnf(path+".rekey_kilobytes", where, "rekey_kilobytes %d rekeys every %d KB, which is very often", kb, kb)
		}
		ra.RekeyKB = kb
	}
	return ra
}

func keys(sets ...map[string]bool) []string {
	var out []string
	for _, s := range sets {
		for k := range s {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
