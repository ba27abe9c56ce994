package model

import "fmt"

// File is one policy file as written by the operator. Field comments name the
// TOML key and its Windows counterpart; docs/policy-format.md is the full
// reference. Optional settings are pointers: nil means "not set", and
// defaults are applied in one place (see the Default* methods), never by
// getters that hide typos.
type File struct {
	// Assign names the one assigned policy ("Assign" in the Windows MMC).
	// It may be omitted when the file holds exactly one policy.
	Assign string `toml:"assign"`

	Endpoint      Endpoint       `toml:"endpoint"`
	FilterLists   []FilterList   `toml:"filter_list"`
	FilterActions []FilterAction `toml:"filter_action"`
	Policies      []Policy       `toml:"policy"`

	// Path is the file the policy was loaded from; relative paths inside it
	// resolve against its folder. Not a TOML key.
	Path string `toml:"-"`

	pos *positions
	dir string   // a folder policy's folder (Path too); "" for a file
	src *sources // a folder policy's files; nil for a file
}

// Endpoint is this computer: what "My IP address" means.
type Endpoint struct {
	Name      string   `toml:"name"`      // the computer name (Alicepc)
	Addresses []string `toml:"addresses"` // "My IP address"
	ID        string   `toml:"id"`        // IKE identity; default the first address

	// LANInterface and RemoteAccessInterface tell swanmgr which network
	// interface a rule of network type "lan" or "remote-access" is bound
	// to. Windows knows its connection types; Linux does not.
	LANInterface          string `toml:"lan_interface"`
	RemoteAccessInterface string `toml:"remote_access_interface"`
}

// Interface is the interface a rule of network type n is bound to; ""
// for every interface (network "all", or "lan" without lan_interface:
// then every interface counts as LAN). charon binds the rule's policies
// to it, and the guard its entries.
func (e Endpoint) Interface(n Network) string {
	switch n {
	case NetworkLAN:
		return e.LANInterface
	case NetworkRemoteAccess:
		return e.RemoteAccessInterface
	}
	return ""
}

// FilterList is a named collection of filters ("IP filter list").
type FilterList struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description"`
	Filters     []Filter `toml:"filter"`
}

// Filter describes traffic: addresses, protocol and ports.
type Filter struct {
	Description string `toml:"description"`
	Source      string `toml:"source"`      // "me", "any", address, CIDR or DNS name
	Destination string `toml:"destination"` // likewise

	// Protocol is "any" (default), "tcp", "udp", "icmp" or a protocol
	// number; SourcePort and DestinationPort are 0-65535 or "any". They are
	// decoded loosely (a TOML string or integer) and checked by Validate.
	Protocol        any `toml:"protocol"`
	SourcePort      any `toml:"source_port"`
	DestinationPort any `toml:"destination_port"`

	// Mirrored defaults to true; strongSwan SAs are always mirrored.
	Mirrored *bool `toml:"mirrored"`
}

// Action is what a filter action does with matching traffic.
type Action string

// Filter action kinds ("Permit", "Block", "Negotiate security").
const (
	Permit    Action = "permit"
	Block     Action = "block"
	Negotiate Action = "negotiate"
)

// Security is the "IP Traffic Security" level of a negotiate action.
type Security string

// Security levels.
const (
	High   Security = "high"
	Medium Security = "medium"
	Custom Security = "custom"
)

// FilterAction is what happens to traffic that matches a filter list.
type FilterAction struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description"`
	Action      Action   `toml:"action"`
	Security    Security `toml:"security"` // negotiate only; default high

	// PFS is "Session key perfect forward secrecy"; default false as in Windows.
	PFS *bool `toml:"pfs"`

	// FallbackToClear is "Allow unsecured communication with non-IPSec-aware
	// computer"; AcceptUnsecured is "Accept unsecured communication, but
	// always respond using IPSec". strongSwan has neither: true is refused.
	FallbackToClear *bool `toml:"fallback_to_clear"`
	AcceptUnsecured *bool `toml:"accept_unsecured"`

	// Guard (default true for negotiate and block) has swanmgr's nftables
	// guard drop clear-text packets that match the rule's filters when no
	// SA protects them (negotiate) or always (block), also while charon is
	// down. That is what "Do not communicate with computers that do not
	// support IPSec" meant in Windows. false weakens it to "as long as
	// charon runs and the SA exists" (docs/enforcement.md).
	Guard *bool `toml:"guard"`

	// Custom security methods (security = "custom").
	ESPEncryption  []string `toml:"esp_encryption"`
	ESPIntegrity   []string `toml:"esp_integrity"`
	AHIntegrity    []string `toml:"ah_integrity"`
	PFSGroup       string   `toml:"pfs_group"`
	RekeySeconds   *int64   `toml:"rekey_seconds"`   // "Generate a new key every N seconds"
	RekeyKilobytes *int64   `toml:"rekey_kilobytes"` // "Generate a new key every N Kbytes"
}

// Policy is an IP security policy: a named set of rules.
type Policy struct {
	Name                string `toml:"name"`
	Description         string `toml:"description"`
	DefaultResponseRule bool   `toml:"default_response_rule"`
	Rules               []Rule `toml:"rule"`
}

// Network is a rule's connection type.
type Network string

// Network types ("Local area network (LAN)", "Remote access", "All network connections").
const (
	NetworkAll          Network = "all"
	NetworkLAN          Network = "lan"
	NetworkRemoteAccess Network = "remote-access"
)

// Rule links a filter list to a filter action and names how peers authenticate.
type Rule struct {
	Name           string  `toml:"name"` // default derived from the filter list
	FilterList     string  `toml:"filter_list"`
	FilterAction   string  `toml:"filter_action"`
	Network        Network `toml:"network"`         // default "all"
	TunnelEndpoint string  `toml:"tunnel_endpoint"` // empty: transport mode
	Authentication []Auth  `toml:"authentication"`
	Disabled       bool    `toml:"disabled"` // the rule's check box in the policy's rule list
}

// AuthMethod is an authentication method.
type AuthMethod string

// Authentication methods.
const (
	PSK         AuthMethod = "psk"
	Certificate AuthMethod = "certificate"
	Kerberos    AuthMethod = "kerberos"
)

// Auth is one authentication method of a rule.
type Auth struct {
	Method AuthMethod `toml:"method"`

	// Preshared key: exactly one of these.
	SecretFile string `toml:"secret_file"`
	SecretEnv  string `toml:"secret_env"`
	Secret     Secret `toml:"secret"`

	// Certificates.
	CA          string `toml:"ca"`
	Certificate string `toml:"certificate"`
	PrivateKey  string `toml:"private_key"`
	PeerID      string `toml:"peer_id"`
}

// Secret holds secret material. Its String and GoString methods redact it
// so that it cannot leak through fmt; Reveal returns the value for the one
// place that must send it to charon.
type Secret struct{ v string }

// NewSecret wraps a secret value.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s.v == "" }

// String implements fmt.Stringer and never shows the value.
func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return "<redacted>"
}

// GoString implements fmt.GoStringer and never shows the value.
func (s Secret) GoString() string { return "model.Secret{<redacted>}" }

// MarshalText never shows the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalTOML lets the TOML decoder fill an inline secret. Only a TOML
// string is accepted: the decoder would otherwise turn a number or a date
// into text silently. The error names the type, never the value.
func (s *Secret) UnmarshalTOML(v any) error {
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("%sfound %s, expected a string", wrongTypePrefix, tomlTypeName(fmt.Sprintf("%T", v)))
	}
	s.v = str
	return nil
}

// UnmarshalText fills a secret from text (decoders other than TOML's).
func (s *Secret) UnmarshalText(b []byte) error {
	s.v = string(b)
	return nil
}
