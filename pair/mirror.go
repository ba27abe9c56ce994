package pair

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// MirrorOptions say whose file Mirror writes and where it goes.
type MirrorOptions struct {
	// Peer is the other computer's IP address, as the source file's
	// filters (or tunnel_endpoint) name it.
	Peer netip.Addr
	// Name is the peer's computer name (endpoint.name of the output);
	// "" = the address.
	Name string
	// Renames maps names (of filter lists, filter actions, rules and the
	// policy) exactly as written in the source to the names the output
	// uses; names not in it are adapted (see Mirror).
	Renames map[string]string
	// OutPath is the file the output will be written to: the caller's
	// Certificate and PrivateKey are written relative to its folder (""
	// standard output: absolute). The source's key files and CA are
	// named next to it whatever it is (see Mirrored.Copies).
	OutPath string
	// Certificate and PrivateKey are the peer's certificate and key files
	// (paths as the caller sees them) for rules that authenticate with
	// certificates; "" writes placeholders next to the output and sets
	// Mirrored.NeedsFiles.
	Certificate, PrivateKey string
}

// Mirrored is the peer's policy file.
type Mirrored struct {
	Text []byte
	// Rules is how many rules of the source concern the peer.
	Rules int
	// Notes are what the operator must still do (set a variable, put a
	// certificate in place); they never hold a secret.
	Notes []string
	// Env holds, for each variable the output reads a key from because
	// the source holds that key inline, the source's key: for validating
	// and checking the output in memory (model.ValidateOptions.LookupEnv).
	// It is never written anywhere.
	Env map[string]model.Secret
	// NeedsFiles: the output names certificate or key files that do not
	// exist yet, so it cannot validate until the operator provides them.
	NeedsFiles bool
	// Copies are the source's files (key files, CAs) that the peer needs
	// a copy of: the output names each by a path relative to itself
	// (To: the file's name, next to the peer's policy file), never by
	// where this computer keeps it; Notes say so.
	Copies []Copy

	// verify is Text with each Copy's From in place of its To: the
	// output as it reads on this computer (see VerifyMirror).
	verify []byte
}

// Copy is a file of the source the peer's policy names under another path.
type Copy struct {
	From string // where the source has it (absolute)
	To   string // as the output names it, relative to the output's folder
}

// ErrNoRules is returned when no enabled rule of the source's assigned
// policy concerns the peer.
var ErrNoRules = errors.New("pair: no rule concerns the peer")

// Mirror writes the policy file of opts.Peer from a validated source: one
// rule for every enabled rule of the assigned policy that involves the
// peer, with only the filters that concern it. Each filter names the
// same traffic from the other end ("me" and the peer swapped; in a tunnel
// rule source and destination swapped too, because a tunnel filter is
// written with this side's network as source), so the rendered selectors
// are the exact mirror. The filter actions are copied; authentication
// refers to the same key file or variable (an inline key is never
// copied: the output names a variable and a note says so).
//
// Names the caller did not map in Renames are adapted: a name ending in
// " to X", " with X" or " for X" ends in the source computer's name
// instead ("Abczz to Bob's PC" → "Abczz to Alicepc"); a policy named
// "Alice's ..." becomes "<Name>'s ..."; other names are kept.
func Mirror(a *model.Assigned, o MirrorOptions) (*Mirrored, error) {
	if !o.Peer.IsValid() {
		return nil, errors.New("pair: the peer must be an IP address")
	}
	o.Peer = o.Peer.Unmap()
	self, err := selfAddr(a.Endpoint, o.Peer)
	if err != nil {
		return nil, err
	}
	for _, addr := range a.Endpoint.Addresses {
		if p, err := netip.ParseAddr(addr); err == nil && p.Unmap() == o.Peer {
			return nil, fmt.Errorf("pair: %s is this endpoint's own address, not a peer", o.Peer)
		}
	}
	m := &mirror{a: a, o: o, self: self, selfName: a.Endpoint.Name, renamed: map[string]bool{}}
	if m.selfName == "" {
		m.selfName = self.String()
	}
	if m.o.Name == "" {
		m.o.Name = o.Peer.String()
	}
	m.build()
	if len(m.rules) == 0 {
		return nil, fmt.Errorf("%w: policy %q has no enabled rule with a filter or tunnel endpoint for %s", ErrNoRules, a.Policy.Name, o.Peer)
	}
	text := m.write(false)
	verify := m.write(true)
	var unused []string
	for old := range o.Renames {
		if !m.renamed[old] {
			unused = append(unused, fmt.Sprintf("%q", old))
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return nil, fmt.Errorf("pair: rename: no filter list, filter action, rule or policy of the mirrored rules is named %s", strings.Join(unused, ", "))
	}
	return &Mirrored{Text: []byte(text), Rules: len(m.rules), Notes: m.notes, Env: m.env, NeedsFiles: m.needsFiles,
		Copies: m.copies, verify: []byte(verify)}, nil
}

// selfAddr is the source endpoint's address the peer talks to: the first
// of the peer's family.
func selfAddr(ep model.Endpoint, peer netip.Addr) (netip.Addr, error) {
	for _, s := range ep.Addresses {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is4() == peer.Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pair: endpoint %q has no address of the peer's family (%s)", ep.Name, peer)
}

type mirror struct {
	a        *model.Assigned
	o        MirrorOptions
	self     netip.Addr
	selfName string

	lists   []mList
	actions []*model.FilterAction
	rules   []mRule
	notes   []string
	peerID  string
	env     map[string]model.Secret

	needsFiles bool
	renamed    map[string]bool // Renames keys used
	copies     []Copy
}

type mList struct {
	name, description, from string
	filters                 []mFilter
}

type mFilter struct {
	src, dst         string
	proto            string // "" any, keyword or number
	srcPort, dstPort int
	comment          string
}

type mRule struct {
	name, list, action, network, tunnel, from string
	auth                                      []mAuth
}

type mAuth struct {
	method                         model.AuthMethod
	secretFile, secretEnv          string
	ca, cert, key, peerID, comment string
	// secretFrom and caFrom are where the source has secretFile and ca.
	secretFrom, caFrom string
}

func (m *mirror) rename(name string, adapt func(string) string) string {
	if n, ok := m.o.Renames[name]; ok {
		m.renamed[name] = true
		return n
	}
	return adapt(name)
}

// adaptTo replaces the other end's name at the end of a name.
func (m *mirror) adaptTo(name string) string {
	for _, sep := range []string{" to ", " with ", " for ", " from "} {
		if i := strings.LastIndex(name, sep); i >= 0 {
			return name[:i+len(sep)] + m.selfName
		}
	}
	return name
}

// adaptOwner names a policy after the peer: a possessive owner is
// replaced ("Alice's IPSec" → "Bobslap's IPSec"), so is the source
// computer's name; any other name gets the peer as owner ("Office" →
// "Bobslap's Office").
func (m *mirror) adaptOwner(name string) string {
	if i := strings.Index(name, "'s "); i > 0 && !strings.Contains(name[:i], " ") {
		return m.o.Name + name[i:]
	}
	if m.a.Endpoint.Name != "" && strings.Contains(name, m.a.Endpoint.Name) {
		return strings.ReplaceAll(name, m.a.Endpoint.Name, m.o.Name)
	}
	return m.o.Name + "'s " + name
}

func keep(s string) string { return s }

func (m *mirror) base() string { return filepath.Base(m.a.File.Path) }

// at is file:line of a line of the policy mirrored (the file's base name).
func (m *mirror) at(line int) string {
	f, l := m.a.File.Locate(line)
	return fmt.Sprintf("%s:%d", filepath.Base(f), l)
}

// isPeer reports whether a filter address is the peer.
func (m *mirror) isPeer(x model.Addr) bool {
	return x.Kind == model.AddrHost && x.Prefix.Addr().Unmap() == m.o.Peer
}

// mapAddr names a filter address as the peer writes it.
func (m *mirror) mapAddr(x model.Addr) string {
	switch {
	case x.Kind == model.AddrMe:
		return m.self.String()
	case m.isPeer(x):
		return "me"
	}
	return x.Text
}

func (m *mirror) build() {
	lists := map[string]int{}
	actions := map[string]bool{}
	for _, r := range m.a.Rules {
		tunnel := r.Tunnel.IsValid()
		var fs []mFilter
		for _, f := range r.Filters {
			concerns := false
			switch {
			case r.Action.Action == model.Negotiate && tunnel:
				concerns = r.Tunnel.Unmap() == m.o.Peer
			default:
				concerns = m.isPeer(f.Src) || m.isPeer(f.Dst)
			}
			if !concerns {
				continue
			}
			mf := mFilter{src: m.mapAddr(f.Src), dst: m.mapAddr(f.Dst), proto: f.ProtoString(), srcPort: f.SrcPort, dstPort: f.DstPort,
				comment: fmt.Sprintf("mirrors %s (%s)", m.at(f.Line), f.Summary())}
			if tunnel {
				// A tunnel filter has this side's network as source.
				mf.src, mf.dst, mf.srcPort, mf.dstPort = mf.dst, mf.src, mf.dstPort, mf.srcPort
			}
			fs = append(fs, mf)
		}
		if len(fs) == 0 {
			continue
		}
		listName := m.rename(r.List.Name, m.adaptTo)
		if i, ok := lists[listName]; !ok {
			lists[listName] = len(m.lists)
			m.lists = append(m.lists, mList{name: listName, description: r.List.Description, filters: fs,
				from: fmt.Sprintf("filter list %q", r.List.Name)})
		} else if !sameFilters(m.lists[i].filters, fs) {
			// Two rules share a list but concern the peer with different
			// filters: cannot happen with one list, but be safe.
			listName += " (" + r.Name + ")"
			m.lists = append(m.lists, mList{name: listName, description: r.List.Description, filters: fs, from: fmt.Sprintf("filter list %q", r.List.Name)})
		}
		actName := m.rename(r.Action.Name, keep)
		if !actions[actName] {
			actions[actName] = true
			fa := m.rawAction(r.Action.Name)
			cp := *fa
			cp.Name = actName
			m.actions = append(m.actions, &cp)
		}
		mr := mRule{list: listName, action: actName, network: string(r.Network), from: fmt.Sprintf("%s rule %q", m.at(r.Line), r.Name)}
		if r.Rule.Name != "" {
			mr.name = m.rename(r.Rule.Name, m.adaptTo)
		}
		if tunnel {
			mr.tunnel = m.self.String()
		}
		if r.Network == model.NetworkRemoteAccess {
			m.notes = append(m.notes, fmt.Sprintf("rule %q: network = \"remote-access\" needs endpoint.remote_access_interface on %s: add it", r.Name, m.o.Name))
		}
		if r.Action.Action == model.Negotiate {
			mr.auth = m.auths(r)
		}
		m.rules = append(m.rules, mr)
	}
}

func sameFilters(a, b []mFilter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.comment, y.comment = "", ""
		if x != y {
			return false
		}
	}
	return true
}

func (m *mirror) rawAction(name string) *model.FilterAction {
	for i := range m.a.File.FilterActions {
		if m.a.File.FilterActions[i].Name == name {
			return &m.a.File.FilterActions[i]
		}
	}
	return &model.FilterAction{Name: name}
}

// copyOf names a file of the source (a key file, a CA) as the peer's
// policy does: by its name, next to the peer's own policy file, since
// where this computer keeps it means nothing on the peer. It returns
// that name and where the source has the file, and notes (once per file)
// that the peer needs a copy there.
func (m *mirror) copyOf(p, rule, what, mode string) (to, from string) {
	from = m.a.File.Resolve(p)
	if abs, err := filepath.Abs(from); err == nil {
		from = abs
	}
	to = filepath.Base(from)
	for _, c := range m.copies {
		switch {
		case c.From == from:
			return c.To, from
		case c.To == to: // two files of one name: keep them apart
			to = render.Slug(rule) + "-" + to
		}
	}
	m.copies = append(m.copies, Copy{From: from, To: to})
	keep := ""
	if mode != "" {
		keep = " (" + mode + ")"
	}
	m.notes = append(m.notes, fmt.Sprintf("rule %q: the %s is read from %s next to %s's policy file: copy %s there%s", rule, what, to, m.o.Name, from, keep))
	return to, from
}

// callerPath writes a path the caller gave (relative to the working
// folder) as the output refers to it.
func (m *mirror) callerPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil || m.o.OutPath == "" {
		return abs
	}
	outDir, err := filepath.Abs(filepath.Dir(m.o.OutPath))
	if err != nil {
		return abs
	}
	if rel, err := filepath.Rel(outDir, abs); err == nil {
		return rel
	}
	return abs
}

func (m *mirror) auths(r model.ResolvedRule) []mAuth {
	var out []mAuth
	for _, au := range r.Rule.Authentication {
		ma := mAuth{method: au.Method}
		switch au.Method {
		case model.PSK:
			if id := m.a.Endpoint.ID; id != "" && id != m.self.String() {
				m.notes = append(m.notes, fmt.Sprintf("rule %q: %s authenticates as %q (endpoint.id), but with a preshared key %s expects the identity it connects to (%s): name %s by that DNS name in %s's filters, or drop endpoint.id; `swanmgr check` reports the mismatch", r.Name, m.selfName, id, m.o.Name, m.self, m.selfName, m.o.Name))
			}
			switch {
			case au.SecretFile != "":
				ma.secretFile, ma.secretFrom = m.copyOf(au.SecretFile, r.Name, "preshared key", "mode 0600, owned by the user who runs swanmgr")
			case au.SecretEnv != "":
				ma.secretEnv = au.SecretEnv
			case !au.Secret.IsZero():
				ma.secretEnv = "SWANMGR_PSK_" + strings.ToUpper(strings.ReplaceAll(render.Slug(r.Name), "-", "_"))
				ma.comment = fmt.Sprintf("%s holds this key inline; it is not copied here", m.base())
				if m.env == nil {
					m.env = map[string]model.Secret{}
				}
				m.env[ma.secretEnv] = au.Secret
				m.notes = append(m.notes, fmt.Sprintf("rule %q: %s holds its preshared key inline; the mirrored rule reads it from $%s instead: set that variable on %s to the same key (better: move the key into a secret_file on both computers)", r.Name, m.base(), ma.secretEnv, m.o.Name))
			}
		case model.Certificate:
			// The peer trusts the CA that signed the source's certificate,
			// which is not known from the file: one CA for both is the
			// common case, so the source's CA is named.
			if au.CA != "" {
				ma.ca, ma.caFrom = m.copyOf(au.CA, r.Name, "CA certificate", "")
			}
			if m.o.Certificate != "" && m.o.PrivateKey != "" {
				ma.cert, ma.key = m.callerPath(m.o.Certificate), m.callerPath(m.o.PrivateKey)
			} else {
				slug := render.Slug(m.o.Name)
				ma.cert, ma.key = slug+".crt", slug+".key"
				m.needsFiles = true
				m.notes = append(m.notes, fmt.Sprintf("rule %q: certificate authentication: put %s's certificate and key at %s and %s (next to the output), signed by a CA %s trusts, or run mirror with --certificate and --private-key", r.Name, m.o.Name, ma.cert, ma.key, m.selfName))
			}
			if m.a.Endpoint.ID != "" && m.a.Endpoint.ID != m.self.String() {
				ma.peerID = m.a.Endpoint.ID
			}
			if au.PeerID != "" {
				m.peerID = au.PeerID
			}
			ma.comment = "the CA named here must have signed " + m.selfName + "'s certificate"
			m.notes = append(m.notes, fmt.Sprintf("rule %q: `ca` is %s's CA, assumed to have signed %s's certificate too: if another CA did, name that one", r.Name, m.base(), m.selfName))
		default:
			ma.comment = "copied as written"
		}
		out = append(out, ma)
	}
	return out
}
