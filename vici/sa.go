package vici

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// IKESA is an IKE_SA as charon's list-sas (and ike-updown, child-updown)
// reports it. Numbers that charon leaves out read 0; a NAT flag charon
// leaves out means "no".
type IKESA struct {
	Name     string // connection (IKE config) name
	UniqueID uint64
	Version  int    // 1 or 2
	State    string // e.g. ESTABLISHED, CONNECTING

	LocalHost  string
	LocalPort  uint16
	LocalID    string
	RemoteHost string
	RemotePort uint16
	RemoteID   string

	RemoteXAuthID string
	RemoteEAPID   string

	Initiator    bool
	InitiatorSPI string // hex
	ResponderSPI string // hex

	NATLocal  bool // the local endpoint is behind a NAT
	NATRemote bool // the remote endpoint is behind a NAT
	NATFake   bool // a NAT situation was faked (as responder)
	NATAny    bool // any endpoint is behind a NAT, also if faked

	EncrAlg      string
	EncrKeysize  int
	IntegAlg     string
	IntegKeysize int
	PRFAlg       string
	DHGroup      string

	Established time.Duration // since the IKE_SA was established
	RekeyTime   time.Duration // until it is rekeyed; 0 when not scheduled
	ReauthTime  time.Duration // until it is reauthenticated; 0 when not scheduled

	LocalVIPs    []string
	RemoteVIPs   []string
	TasksQueued  []string
	TasksActive  []string
	TasksPassive []string

	Children []ChildSA // in charon's order
}

// ChildSA is a CHILD_SA within an IKESA.
type ChildSA struct {
	Name     string // the CHILD_SA config name
	Key      string // its key in charon's message: "<name>-<uniqueid>"
	UniqueID uint64
	ReqID    uint64
	State    string // e.g. INSTALLED, REKEYED
	Mode     string // TUNNEL, TRANSPORT, BEET, TRANSPORT_PROXY
	Protocol string // ESP or AH
	Encap    bool   // UDP encapsulation
	SPIIn    string // hex
	SPIOut   string // hex
	CPIIn    string // hex, with IPComp
	CPIOut   string

	EncrAlg      string
	EncrKeysize  int
	IntegAlg     string
	IntegKeysize int
	PRFAlg       string
	DHGroup      string
	ESN          bool

	BytesIn    uint64
	BytesOut   uint64
	PacketsIn  uint64
	PacketsOut uint64
	UseIn      time.Duration // since the last inbound packet; 0 when none yet
	UseOut     time.Duration // since the last outbound packet; 0 when none yet

	RekeyTime   time.Duration // until rekeying; 0 when not scheduled
	LifeTime    time.Duration // until expiry; 0 when not set
	InstallTime time.Duration // since installation

	LocalTS  []string
	RemoteTS []string
}

// SAFilter narrows ListSAs. Zero values select everything.
type SAFilter struct {
	IKE     string // IKE_SA config name
	IKEID   uint64 // IKE_SA unique id
	Child   string // CHILD_SA config name (other children are left out)
	ChildID uint64 // CHILD_SA unique id

	// NoBlock makes charon skip IKE_SAs that one of its threads is working
	// on instead of waiting for them (list-sas with noblock). Such an
	// IKE_SA, e.g. one an initiate has just finished with, is then missing
	// from the list (seen on 5.9.8): use it only where a quick, possibly
	// incomplete answer is acceptable, never before deciding what exists.
	// Without it the wait is bounded by the context's deadline.
	NoBlock bool
}

// ListSAs lists the IKE_SAs and their CHILD_SAs, in charon's order. It runs
// on a session of its own and loses no IKE_SA however many there are.
//
// One limit is charon's: it sends each IKE_SA as one message and silently
// discards a message over 512 KiB (logging "vici message size ... exceeds
// maximum size"), so an IKE_SA with more than roughly a thousand CHILD_SAs
// is missing from the list (1,000 still fit, measured on 5.9.8).
func (c *Client) ListSAs(ctx context.Context, f SAFilter) ([]IKESA, error) {
	req := govici.NewMessage()
	if f.NoBlock {
		set(req, "noblock", "yes")
	}
	set(req, "ike", f.IKE)
	set(req, "child", f.Child)
	if f.IKEID != 0 {
		set(req, "ike-id", strconv.FormatUint(f.IKEID, 10))
	}
	if f.ChildID != 0 {
		set(req, "child-id", strconv.FormatUint(f.ChildID, 10))
	}
	ctx, cancel, added := c.withDeadline(ctx)
	defer cancel()
	// Each message is read as it comes, so that charon's answer is not
	// held whole (thousands of messages) beside what is made of it.
	var (
		out     []IKESA
		readErr error
	)
	if _, err := c.stream(ctx, "list-sas", "", "list-sa", req, streamBuffer, added, func(m *govici.Message) {
		if readErr != nil {
			return
		}
		sas, err := parseIKESAs(m)
		if err != nil {
			readErr = fmt.Errorf("list-sas: %w", err)
			return
		}
		out = append(out, sas...)
	}); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return out, nil
}

// set adds a non-empty string value. Setting a string cannot fail.
func set(m *govici.Message, key, value string) {
	if value != "" {
		_ = m.Set(key, value)
	}
}

// parseIKESAs reads every IKE_SA section of a list-sa, ike-updown,
// child-updown or ike-update message, skipping the plain values beside them
// (the "up" flag, ike-update's new addresses).
func parseIKESAs(m *govici.Message) ([]IKESA, error) {
	return sections(m, parseIKESA)
}

// sections parses every subsection of m, in order, skipping plain values.
func sections[T any](m *govici.Message, parse func(name string, body *govici.Message) (T, error)) ([]T, error) {
	var out []T
	for _, name := range m.Keys() {
		body, ok := m.Get(name).(*govici.Message)
		if !ok {
			continue
		}
		v, err := parse(name, body)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func parseIKESA(name string, m *govici.Message) (IKESA, error) {
	f := &fields{m: m, path: fmt.Sprintf("IKE_SA %q", name)}
	sa := IKESA{
		Name:          name,
		UniqueID:      f.u64("uniqueid"),
		Version:       f.int("version"),
		State:         f.str("state"),
		LocalHost:     f.str("local-host"),
		LocalPort:     f.port("local-port"),
		LocalID:       f.str("local-id"),
		RemoteHost:    f.str("remote-host"),
		RemotePort:    f.port("remote-port"),
		RemoteID:      f.str("remote-id"),
		RemoteXAuthID: f.str("remote-xauth-id"),
		RemoteEAPID:   f.str("remote-eap-id"),
		Initiator:     f.flag("initiator"),
		InitiatorSPI:  f.str("initiator-spi"),
		ResponderSPI:  f.str("responder-spi"),
		NATLocal:      f.flag("nat-local"),
		NATRemote:     f.flag("nat-remote"),
		NATFake:       f.flag("nat-fake"),
		NATAny:        f.flag("nat-any"),
		EncrAlg:       f.str("encr-alg"),
		EncrKeysize:   f.int("encr-keysize"),
		IntegAlg:      f.str("integ-alg"),
		IntegKeysize:  f.int("integ-keysize"),
		PRFAlg:        f.str("prf-alg"),
		DHGroup:       f.str("dh-group"),
		Established:   f.seconds("established"),
		RekeyTime:     f.seconds("rekey-time"),
		ReauthTime:    f.seconds("reauth-time"),
		LocalVIPs:     f.list("local-vips"),
		RemoteVIPs:    f.list("remote-vips"),
		TasksQueued:   f.list("tasks-queued"),
		TasksActive:   f.list("tasks-active"),
		TasksPassive:  f.list("tasks-passive"),
	}
	if children := f.section("child-sas"); children != nil {
		for _, key := range children.Keys() {
			body, ok := children.Get(key).(*govici.Message)
			if !ok {
				f.fail("child-sas", "%q is not a section", key)
				break
			}
			ch, err := parseChildSA(name, key, body)
			if err != nil {
				return IKESA{}, err
			}
			sa.Children = append(sa.Children, ch)
		}
	}
	return sa, f.err
}

func parseChildSA(ike, key string, m *govici.Message) (ChildSA, error) {
	f := &fields{m: m, path: fmt.Sprintf("IKE_SA %q child %q", ike, key)}
	ch := ChildSA{
		Name:         f.str("name"),
		Key:          key,
		UniqueID:     f.u64("uniqueid"),
		ReqID:        f.u64("reqid"),
		State:        f.str("state"),
		Mode:         f.str("mode"),
		Protocol:     f.str("protocol"),
		Encap:        f.flag("encap"),
		SPIIn:        f.str("spi-in"),
		SPIOut:       f.str("spi-out"),
		CPIIn:        f.str("cpi-in"),
		CPIOut:       f.str("cpi-out"),
		EncrAlg:      f.str("encr-alg"),
		EncrKeysize:  f.int("encr-keysize"),
		IntegAlg:     f.str("integ-alg"),
		IntegKeysize: f.int("integ-keysize"),
		PRFAlg:       f.str("prf-alg"),
		DHGroup:      f.str("dh-group"),
		ESN:          f.flag("esn"),
		BytesIn:      f.u64("bytes-in"),
		BytesOut:     f.u64("bytes-out"),
		PacketsIn:    f.u64("packets-in"),
		PacketsOut:   f.u64("packets-out"),
		UseIn:        f.seconds("use-in"),
		UseOut:       f.seconds("use-out"),
		RekeyTime:    f.seconds("rekey-time"),
		LifeTime:     f.seconds("life-time"),
		InstallTime:  f.seconds("install-time"),
		LocalTS:      f.list("local-ts"),
		RemoteTS:     f.list("remote-ts"),
	}
	if ch.Name == "" {
		// charon before 5.6 had no "name": the key is "<name>-<uniqueid>".
		ch.Name = strings.TrimSuffix(key, "-"+f.str("uniqueid"))
	}
	return ch, f.err
}

// ConnInfo is a loaded connection as list-conns reports it. list-conns
// does not report proposals, start actions or most other settings: keep
// your own record of what you loaded to know whether it changed.
type ConnInfo struct {
	Name        string
	LocalAddrs  []string
	RemoteAddrs []string
	Version     string // IKEv1, IKEv2, or "0" for any
	ReauthTime  time.Duration
	RekeyTime   time.Duration
	Unique      string
	DPDDelay    time.Duration
	DPDTimeout  time.Duration
	Local       []AuthInfo // authentication rounds, in order
	Remote      []AuthInfo
	Children    []ChildConnInfo
}

// AuthInfo is one local or remote authentication round of a ConnInfo.
type AuthInfo struct {
	Class      string // e.g. "pre-shared key", "public key"
	ID         string
	CAID       string
	EAPType    string
	XAuth      string
	Revocation string
	AAAID      string
	EAPID      string
	XAuthID    string
	Groups     []string
	CertPolicy []string
	Certs      []string
	CACerts    []string
}

// ChildConnInfo is a CHILD_SA config of a ConnInfo.
type ChildConnInfo struct {
	Name         string
	Mode         string
	Label        string
	RekeyTime    time.Duration
	RekeyBytes   uint64
	RekeyPackets uint64
	DPDAction    string
	CloseAction  string
	LocalTS      []string
	RemoteTS     []string
	Interface    string
	Priority     uint64
}

// ListConns lists the connections charon knows, including those not loaded
// over VICI (compare with Conns). Like ListSAs it runs on a session of its
// own and loses none however many there are.
func (c *Client) ListConns(ctx context.Context) ([]ConnInfo, error) {
	ctx, cancel, added := c.withDeadline(ctx)
	defer cancel()
	// Each message is read as it comes, so that charon's answer is not
	// held whole (thousands of messages) beside what is made of it.
	var (
		out     []ConnInfo
		readErr error
	)
	if _, err := c.stream(ctx, "list-conns", "", "list-conn", nil, streamBuffer, added, func(m *govici.Message) {
		if readErr != nil {
			return
		}
		cis, err := sections(m, parseConnInfo)
		if err != nil {
			readErr = fmt.Errorf("list-conns: %w", err)
			return
		}
		out = append(out, cis...)
	}); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return out, nil
}

func parseConnInfo(name string, m *govici.Message) (ConnInfo, error) {
	f := &fields{m: m, path: fmt.Sprintf("connection %q", name)}
	ci := ConnInfo{
		Name:        name,
		LocalAddrs:  f.list("local_addrs"),
		RemoteAddrs: f.list("remote_addrs"),
		Version:     f.str("version"),
		ReauthTime:  f.seconds("reauth_time"),
		RekeyTime:   f.seconds("rekey_time"),
		Unique:      f.str("unique"),
		DPDDelay:    f.seconds("dpd_delay"),
		DPDTimeout:  f.seconds("dpd_timeout"),
	}
	// Auth rounds are keyed local-1, local-2, ..., remote-1, ... in order.
	for _, key := range m.Keys() {
		side, _, ok := strings.Cut(key, "-")
		if !ok || (side != "local" && side != "remote") {
			continue
		}
		sec := f.section(key)
		if sec == nil {
			continue
		}
		a := &fields{m: sec, path: f.path + " " + key}
		ai := AuthInfo{
			Class:      a.str("class"),
			ID:         a.str("id"),
			CAID:       a.str("ca_id"),
			EAPType:    a.str("eap-type"),
			XAuth:      a.str("xauth"),
			Revocation: a.str("revocation"),
			AAAID:      a.str("aaa_id"),
			EAPID:      a.str("eap_id"),
			XAuthID:    a.str("xauth_id"),
			Groups:     a.list("groups"),
			CertPolicy: a.list("cert_policy"),
			Certs:      a.list("certs"),
			CACerts:    a.list("cacerts"),
		}
		if a.err != nil {
			return ConnInfo{}, a.err
		}
		if side == "local" {
			ci.Local = append(ci.Local, ai)
		} else {
			ci.Remote = append(ci.Remote, ai)
		}
	}
	if children := f.section("children"); children != nil {
		for _, cname := range children.Keys() {
			body, ok := children.Get(cname).(*govici.Message)
			if !ok {
				f.fail("children", "%q is not a section", cname)
				break
			}
			cf := &fields{m: body, path: fmt.Sprintf("%s child %q", f.path, cname)}
			ch := ChildConnInfo{
				Name:         cname,
				Mode:         cf.str("mode"),
				Label:        cf.str("label"),
				RekeyTime:    cf.seconds("rekey_time"),
				RekeyBytes:   cf.u64("rekey_bytes"),
				RekeyPackets: cf.u64("rekey_packets"),
				DPDAction:    cf.str("dpd_action"),
				CloseAction:  cf.str("close_action"),
				LocalTS:      cf.list("local-ts"),
				RemoteTS:     cf.list("remote-ts"),
				Interface:    cf.str("interface"),
				Priority:     cf.u64("priority"),
			}
			if cf.err != nil {
				return ConnInfo{}, cf.err
			}
			ci.Children = append(ci.Children, ch)
		}
	}
	return ci, f.err
}
