package model

import (
	"net/netip"
	"strconv"
)

// Assigned is the assigned policy of a valid file with every reference
// resolved and every default applied: what the renderer works from.
type Assigned struct {
	File     *File
	Endpoint Endpoint // ID defaulted to the first address
	Policy   *Policy
	Rules    []ResolvedRule // enabled rules, in file order
	// Inputs are the files (keys, certificates) and environment variables
	// the assigned policy was read from, besides the policy file itself,
	// with what was read. Apply fingerprints them to tell cheaply whether
	// anything changed since the last assignment.
	Inputs []Input
}

// Input is one file or environment variable a policy was read from.
type Input struct {
	Kind string // "file" or "env"
	Name string // the path or the variable
	Data Secret // what was read
}

// ResolvedRule is a rule with its filter list, filter action and
// authentication resolved.
type ResolvedRule struct {
	Index   int    // position in the policy's rule list (0-based)
	Name    string // defaulted from the filter list
	Line    int
	Rule    *Rule
	List    *FilterList
	Action  ResolvedAction
	Filters []ResolvedFilter
	Auth    []ResolvedAuth
	Network Network
	Tunnel  netip.Addr // valid only in tunnel mode
}

// ResolvedAction is a filter action with defaults applied.
type ResolvedAction struct {
	Name      string
	Action    Action
	Security  Security
	PFS       bool
	PFSGroup  string // set when PFS (default x25519)
	ESPEnc    []string
	ESPInteg  []string
	AHInteg   []string
	RekeySecs int64 // 0: charon's default
	RekeyKB   int64 // 0: not set
	// Guard: the nftables guard enforces this action (negotiate and
	// block; false when the filter action opts out, always for permit).
	Guard bool
}

// AddrKind is what a filter address means.
type AddrKind int

// Address kinds.
const (
	AddrMe      AddrKind = iota // "me": this endpoint's addresses
	AddrAny                     // "any"
	AddrHost                    // one IP address
	AddrSubnet                  // a CIDR prefix
	AddrDNS                     // a DNS name, resolved by charon
	AddrInvalid                 // not understood; an error says why
)

// Addr is a filter's source or destination.
type Addr struct {
	Kind   AddrKind
	Prefix netip.Prefix // AddrHost (full length) and AddrSubnet
	Name   string       // AddrDNS
	Text   string       // as written
}

// String returns the address as written.
func (a Addr) String() string { return a.Text }

// IsHost reports whether the address names one host (IP or DNS name).
func (a Addr) IsHost() bool { return a.Kind == AddrHost || a.Kind == AddrDNS }

// Host returns a one-host address as charon takes it in remote_addrs.
func (a Addr) Host() string {
	switch a.Kind {
	case AddrHost:
		return a.Prefix.Addr().String()
	case AddrDNS:
		return a.Name
	}
	return a.Text
}

// AnyPort is a port that is not restricted.
const AnyPort = -1

// ResolvedFilter is a filter with parsed addresses, protocol and ports.
type ResolvedFilter struct {
	Index    int // position in its filter list (0-based)
	Line     int
	Src, Dst Addr
	Proto    int    // 0: any
	ProtoKW  string // "tcp", "udp", "icmp", or "" for a number / any
	SrcPort  int    // AnyPort or 0-65535
	DstPort  int
}

// ProtoString is the protocol as strongSwan writes it in a selector
// ("tcp", "17", "" for any).
func (f ResolvedFilter) ProtoString() string {
	if f.Proto == 0 {
		return ""
	}
	if f.ProtoKW != "" {
		return f.ProtoKW
	}
	return strconv.Itoa(f.Proto)
}

// ResolvedAuth is an authentication method with its material read.
type ResolvedAuth struct {
	Method AuthMethod
	// Preshared key and where it came from (for messages; never the value).
	PSK    Secret
	Source string
	// Certificates: PEM or DER as read; absolute paths for swanctl.conf text.
	CAPath, CertPath, KeyPath string
	CA, Cert                  []byte
	Key                       Secret
	PeerID                    string
}

// InlineSecrets reports whether a preshared key of the policy is written
// in the policy file itself: such a policy cannot be kept on disk to be
// restored later without writing the key there too.
func (a *Assigned) InlineSecrets() bool {
	for _, r := range a.Rules {
		for _, au := range r.Auth {
			if au.Source == "inline secret" {
				return true
			}
		}
	}
	return false
}

// Where names a rule for messages.
func (r ResolvedRule) Where(p *Policy) string {
	return "policy " + strconv.Quote(p.Name) + " rule " + strconv.Quote(r.Name)
}

// Summary describes the filter for people: "me → 172.31.67.244 tcp any→6667".
func (f ResolvedFilter) Summary() string {
	s := f.Src.String() + " → " + f.Dst.String()
	if p := f.ProtoString(); p != "" {
		s += " " + p
		if f.SrcPort != AnyPort || f.DstPort != AnyPort {
			s += " " + portText(f.SrcPort) + "→" + portText(f.DstPort)
		}
	}
	return s
}

func portText(p int) string {
	if p == AnyPort {
		return "any"
	}
	return strconv.Itoa(p)
}
