package status

import (
	"encoding/json"
	"time"
)

// SchemaVersion is the version of the JSON document (docs/status-json.md).
// Fields may be added within a version; none is removed or changes meaning.
const SchemaVersion = 1

// Status is one view of charon joined with swanmgr's record. Every
// optional value is a pointer (or a nil slice): nil is "not known" and is
// written as null, never as a made-up zero.
type Status struct {
	SchemaVersion int        `json:"schema_version"`
	Time          time.Time  `json:"time"`
	Socket        string     `json:"socket"`
	Daemon        DaemonInfo `json:"daemon"`
	Policy        *Policy    `json:"policy"`
	Filter        Filter     `json:"filter"`
	SAs           []SA       `json:"security_associations"`
	IKESAs        []IKESA    `json:"ike_sas"`
	Statistics    Statistics `json:"statistics"`
	// Counters are charon's raw IKE counters (get-counters), nil when the
	// counters plugin is not loaded.
	Counters map[string]uint64 `json:"daemon_counters"`
	// Guard is swanmgr's nftables guard of the assigned policy, null when
	// it has none.
	Guard *Guard `json:"guard"`
	// Confirmation is a change made with --confirm waiting for `swanmgr
	// confirm`, LastRevert the last change that was reverted; null: none.
	Confirmation *PendingConfirmation `json:"pending_confirmation"`
	LastRevert   *LastRevert          `json:"last_revert"`
	// Warnings say which part of the view is missing and why (a command
	// that failed while others worked).
	Warnings []string `json:"warnings"`
}

// DaemonInfo describes the charon the view comes from.
type DaemonInfo struct {
	Reachable bool    `json:"reachable"`
	Error     *string `json:"error"` // why it is not reachable
	Name      *string `json:"name"`  // "charon"
	Version   *string `json:"version"`
	Sysname   *string `json:"sysname"`
	Release   *string `json:"release"`
	Machine   *string `json:"machine"`
	// StartedAt is charon's start (stats uptime.since, a local time with
	// one-second resolution); Uptime is Status.Time minus it.
	StartedAt      *time.Time `json:"started_at"`
	UptimeSeconds  *int64     `json:"uptime_seconds"`
	CountersPlugin bool       `json:"counters_plugin"`
}

// Policy is the policy swanmgr assigned to this charon, from its record.
type Policy struct {
	Name      string    `json:"name"`
	Source    string    `json:"source"`
	Backend   string    `json:"backend"`
	AppliedAt time.Time `json:"applied_at"`
	Rules     []string  `json:"rules"`
}

// Filter narrows the rows of a view (--rule, --peer). Statistics always
// cover the whole daemon. In JSON an unset filter is null.
type Filter struct {
	Rule string `json:"rule"`
	Peer string `json:"peer"`
}

// MarshalJSON writes an unset filter as null.
func (f Filter) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Rule *string `json:"rule"`
		Peer *string `json:"peer"`
	}{optStr(f.Rule), optStr(f.Peer)})
}

// SA states that are not charon's CHILD_SA states (charon's are upper
// case: INSTALLED, REKEYING, REKEYED, ...).
const (
	StateNotEstablished = "not established" // a rule filter without an SA
	StateNegotiating    = "negotiating"     // ... whose IKE_SA is being set up
	StateNotLoaded      = "not loaded"      // ... whose connection charon does not have
	StatePermit         = "permit"          // a permit rule: a pass shunt, never an SA
	StateBlock          = "block"           // a block rule: a drop shunt, never an SA
	StateInstalled      = "INSTALLED"
)

// SA is one row of the "security associations" view: a CHILD_SA, or a
// rule filter of the assigned policy that has none.
type SA struct {
	// Managed: the connection is one swanmgr loaded (in its record).
	Managed bool `json:"managed"`
	// Guarded: the rule is enforced by swanmgr's nftables guard too (its
	// clear text is dropped when no SA protects it); see Status.Guard.
	Guarded    bool    `json:"guarded"`
	Policy     *string `json:"policy"`
	Rule       *string `json:"rule"`
	FilterList *string `json:"filter_list"`
	Filter     *int    `json:"filter"` // 1-based position in the filter list
	FilterText *string `json:"filter_summary"`
	Action     *string `json:"action"` // negotiate, permit, block
	Connection string  `json:"connection"`
	Child      string  `json:"child"`
	Peer       *string `json:"peer"` // the IKE peer's address (configured one without an SA)

	State     string  `json:"state"`
	HasSA     bool    `json:"has_sa"` // a CHILD_SA exists (in any charon state)
	IKESAID   *uint64 `json:"ike_sa_id"`
	ChildSAID *uint64 `json:"child_sa_id"`

	Source      Endpoint `json:"source"`      // this computer's side
	Destination Endpoint `json:"destination"` // the other side
	Protocol    *string  `json:"protocol"`    // "tcp", "udp", "icmp", a number; null: any
	// TunnelEndpoint is the peer's tunnel endpoint, null ("none") for
	// transport mode and for a host-to-host tunnel between the IKE peers.
	TunnelEndpoint *string `json:"tunnel_endpoint"`
	// HostToHostTunnel: tunnel mode whose selectors are the two IKE
	// addresses (libipsec has no transport mode): no tunnel endpoint.
	HostToHostTunnel bool    `json:"host_to_host_tunnel"`
	Mode             *string `json:"mode"` // charon's: TUNNEL, TRANSPORT, ...
	UDPEncap         *bool   `json:"udp_encapsulation"`

	Security *Security `json:"security"`

	BytesIn    *uint64 `json:"bytes_in"`
	BytesOut   *uint64 `json:"bytes_out"`
	PacketsIn  *uint64 `json:"packets_in"`
	PacketsOut *uint64 `json:"packets_out"`

	EstablishedAt      *time.Time `json:"established_at"`
	EstablishedSeconds *int64     `json:"established_seconds"`
	RekeyAt            *time.Time `json:"rekey_at"`
	RekeyInSeconds     *int64     `json:"rekey_in_seconds"`
	ExpiresAt          *time.Time `json:"expires_at"`
	ExpiresInSeconds   *int64     `json:"expires_in_seconds"`

	Note *string `json:"note"`
}

// Endpoint is one side of an SA's traffic selectors.
type Endpoint struct {
	// Addresses: a host as a plain address, a network in CIDR form.
	Addresses []string `json:"addresses"`
	// AnyPort: every selector of the side allows any port. Port is the
	// single port when every selector has the same one, PortRange the
	// range when every selector has the same range. All three unset: the
	// selectors differ (see Selectors).
	AnyPort   bool    `json:"any_port"`
	Port      *int    `json:"port"`
	PortRange *[2]int `json:"port_range"`
	// Selectors are charon's traffic selectors with port numbers (charon
	// writes /etc/services names, e.g. tcp/ircd for 6667).
	Selectors []string `json:"selectors"`
}

// Security is what protects an SA.
type Security struct {
	// Text is the IPSecMon-style summary, e.g. "ESP AES_GCM_16-256, PFS x25519".
	Text              string  `json:"text"`
	Protocol          *string `json:"protocol"` // ESP or AH
	Encryption        *string `json:"encryption"`
	EncryptionKeySize *int    `json:"encryption_keysize"`
	Integrity         *string `json:"integrity"`
	IntegrityKeySize  *int    `json:"integrity_keysize"`
	// DHGroup is the key exchange of this SA's own keys; null when its keys
	// were derived from the IKE_SA (the first CHILD_SA, set up with
	// IKE_AUTH, or a rekey without PFS).
	DHGroup *string `json:"dh_group"`
	// Confidential: encrypted (ESP with a cipher); false is integrity only
	// (AH, ESP with NULL or AES-GMAC).
	Confidential *bool   `json:"confidential"`
	SPIIn        *string `json:"spi_in"`
	SPIOut       *string `json:"spi_out"`
	// ConfiguredProposals and ConfiguredPFSGroup are what swanmgr asked
	// for (from its record), for rows of rules it assigned.
	ConfiguredProposals []string `json:"configured_proposals"`
	ConfiguredPFSGroup  *string  `json:"configured_pfs_group"`
}

// IKESA is one row of the "IKE SAs" view.
type IKESA struct {
	Connection string  `json:"connection"`
	IKESAID    uint64  `json:"ike_sa_id"`
	Managed    bool    `json:"managed"`
	Policy     *string `json:"policy"`
	Rule       *string `json:"rule"`
	State      string  `json:"state"`
	Version    *int    `json:"version"`
	Initiator  bool    `json:"initiator"`

	Local  IKEEndpoint `json:"local"`
	Remote IKEEndpoint `json:"remote"`

	// Auth are the authentication classes of the first round, as charon
	// names them ("pre-shared key", "public key", "EAP", ...); null when
	// unknown.
	AuthLocal  *string `json:"auth_local"`
	AuthRemote *string `json:"auth_remote"`

	Algorithms IKEAlgorithms `json:"algorithms"`
	NAT        NAT           `json:"nat"`

	EstablishedAt      *time.Time `json:"established_at"`
	EstablishedSeconds *int64     `json:"established_seconds"`
	RekeyAt            *time.Time `json:"rekey_at"`
	RekeyInSeconds     *int64     `json:"rekey_in_seconds"`
	ReauthAt           *time.Time `json:"reauth_at"`
	ReauthInSeconds    *int64     `json:"reauth_in_seconds"`

	ChildSAs     int    `json:"child_sas"`
	InitiatorSPI string `json:"initiator_spi"`
	ResponderSPI string `json:"responder_spi"`
}

// IKEEndpoint is one end of an IKE_SA.
type IKEEndpoint struct {
	Address string `json:"address"`
	Port    *int   `json:"port"`
	ID      string `json:"id"`
}

// IKEAlgorithms are an IKE_SA's negotiated algorithms.
type IKEAlgorithms struct {
	Text              string  `json:"text"` // e.g. AES_GCM_16-256/PRF_HMAC_SHA2_384/CURVE_25519
	Encryption        *string `json:"encryption"`
	EncryptionKeySize *int    `json:"encryption_keysize"`
	Integrity         *string `json:"integrity"`
	IntegrityKeySize  *int    `json:"integrity_keysize"`
	PRF               *string `json:"prf"`
	DHGroup           *string `json:"dh_group"`
}

// NAT is what charon detected. With charon's userspace IPsec (libipsec)
// UDP encapsulation is forced by faking NAT detection, so a NAT may be
// reported where there is none.
type NAT struct {
	Local  bool `json:"local"`  // this computer is behind a NAT
	Remote bool `json:"remote"` // the peer is behind a NAT
	Fake   bool `json:"fake"`   // charon faked a NAT situation
	Any    bool `json:"any"`
}

// Statistics are IPSecMon's figures.
type Statistics struct {
	ActiveAssociations         Figure     `json:"active_associations"`
	ConfidentialBytesSent      Figure     `json:"confidential_bytes_sent"`
	ConfidentialBytesReceived  Figure     `json:"confidential_bytes_received"`
	AuthenticatedBytesSent     Figure     `json:"authenticated_bytes_sent"`
	AuthenticatedBytesReceived Figure     `json:"authenticated_bytes_received"`
	KeyAdditions               Figure     `json:"key_additions"`
	Rekeys                     Figure     `json:"rekeys"`
	MainModes                  Figure     `json:"main_modes"`
	QuickModes                 Figure     `json:"quick_modes"`
	AuthenticationFailures     Figure     `json:"authentication_failures"`
	HalfOpenIKESAs             Figure     `json:"half_open_ike_sas"`
	IKESAs                     Figure     `json:"ike_sas"`
	EventsCountedSince         *time.Time `json:"events_counted_since"`
	EventsReconnects           int        `json:"events_reconnects"`
}

// Where a figure comes from.
const (
	SourceListSAs  = "list-sas"     // charon's SAs as they are now
	SourceStats    = "stats"        // charon's stats command
	SourceCounters = "get-counters" // charon's counters plugin, since charon started
	SourceEvents   = "events"       // counted by swanmgr from charon's events
)

// Figure is one statistic. Value nil means charon does not expose it (and
// swanmgr did not count it): "n/a".
type Figure struct {
	Value  *uint64    `json:"value"`
	Source *string    `json:"source"`
	Since  *time.Time `json:"since"` // counted since (charon's start, or swanmgr's watch start)
	Note   string     `json:"note"`
}
