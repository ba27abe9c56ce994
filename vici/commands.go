package vici

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	govici "github.com/strongswan/govici/vici"
)

// LoadConn loads (or replaces) the connection name with the body conn, as
// load-conn {name = conn}. Re-loading an unchanged connection is not free in
// charon (it re-runs the start actions of changed children): send only what
// changed.
func (c *Client) LoadConn(ctx context.Context, name string, conn *govici.Message) error {
	if name == "" || conn == nil {
		return fmt.Errorf("load-conn %q: need a name and a body", name)
	}
	req := govici.NewMessage()
	if err := req.Set(name, conn); err != nil {
		return fmt.Errorf("load-conn %q: %w", name, err)
	}
	_, err := c.call(ctx, "load-conn", name, req, false)
	return err
}

// UnloadConn unloads a connection loaded over VICI. charon refuses unknown
// names ("unload: connection 'x' not found"). It undoes trap and start
// actions only: SAs of the connection may live on (terminate them).
func (c *Client) UnloadConn(ctx context.Context, name string) error {
	req := govici.NewMessage()
	set(req, "name", name)
	_, err := c.call(ctx, "unload-conn", name, req, false)
	return err
}

// Conns returns the names of the connections loaded over VICI (get-conns),
// not those from other backends.
func (c *Client) Conns(ctx context.Context) ([]string, error) {
	return c.names(ctx, "get-conns", "conns")
}

// LoadShared loads a shared secret (type IKE, EAP, XAUTH, NTLM or PPK) under
// a stable id; loading the same id again replaces it. data is secret: it is
// sent to charon and appears in no error.
func (c *Client) LoadShared(ctx context.Context, id, typ string, data []byte, owners []string) error {
	if id == "" {
		return errors.New("load-shared: need an id (a secret without one cannot be unloaded)")
	}
	req := govici.NewMessage()
	set(req, "id", id)
	set(req, "type", typ)
	set(req, "data", string(data))
	if len(owners) > 0 {
		if err := req.Set("owners", owners); err != nil {
			return fmt.Errorf("load-shared %q: %w", id, err)
		}
	}
	_, err := c.call(ctx, "load-shared", id, req, false)
	return err
}

// UnloadShared unloads the shared secret id. charon succeeds for unknown ids.
func (c *Client) UnloadShared(ctx context.Context, id string) error {
	req := govici.NewMessage()
	set(req, "id", id)
	_, err := c.call(ctx, "unload-shared", id, req, false)
	return err
}

// SharedIDs returns the ids of the shared secrets loaded over VICI (get-shared).
func (c *Client) SharedIDs(ctx context.Context) ([]string, error) {
	return c.names(ctx, "get-shared", "keys")
}

// LoadCert loads a certificate: typ is X509, X509_AC or X509_CRL, flag NONE,
// CA, AA or OCSP, data its PEM or DER encoding. There is no way to unload a
// single certificate over VICI.
func (c *Client) LoadCert(ctx context.Context, typ, flag string, data []byte) error {
	req := govici.NewMessage()
	set(req, "type", typ)
	set(req, "flag", flag)
	set(req, "data", string(data))
	_, err := c.call(ctx, "load-cert", "", req, false)
	return err
}

// LoadKey loads a private key (typ rsa, ecdsa, ed25519, ed448 or any; data
// PEM or DER) and returns its key id, the hex SHA-1 of its public key, for
// UnloadKey. data is secret and appears in no error.
func (c *Client) LoadKey(ctx context.Context, typ string, data []byte) (string, error) {
	req := govici.NewMessage()
	set(req, "type", typ)
	set(req, "data", string(data))
	resp, err := c.call(ctx, "load-key", "", req, false)
	if err != nil {
		return "", err
	}
	id, _ := resp.Get("id").(string)
	if id == "" {
		return "", errors.New("load-key: charon returned no key id")
	}
	return id, nil
}

// UnloadKey unloads the private key with the given key id.
func (c *Client) UnloadKey(ctx context.Context, id string) error {
	req := govici.NewMessage()
	set(req, "id", id)
	_, err := c.call(ctx, "unload-key", id, req, false)
	return err
}

// Keys returns the ids of the private keys loaded over VICI (get-keys).
func (c *Client) Keys(ctx context.Context) ([]string, error) {
	return c.names(ctx, "get-keys", "keys")
}

func (c *Client) names(ctx context.Context, cmd, key string) ([]string, error) {
	resp, err := c.call(ctx, cmd, "", nil, true)
	if err != nil {
		return nil, err
	}
	switch v := resp.Get(key).(type) {
	case nil:
		return nil, nil
	case []string:
		return v, nil
	default:
		return nil, fmt.Errorf("%s: %s is not a list", cmd, key)
	}
}

// RekeyRequest selects the SAs to rekey; at least one selector is needed.
type RekeyRequest struct {
	IKE     string // IKE_SA config name
	Child   string // CHILD_SA config name
	IKEID   uint64 // IKE_SA unique id
	ChildID uint64 // CHILD_SA unique id
	Reauth  bool   // reauthenticate an IKEv2 SA instead of rekeying it
}

// Rekey starts rekeying the selected SAs and returns without waiting for the
// rekeying to complete. No matching SA is an error from charon.
func (c *Client) Rekey(ctx context.Context, r RekeyRequest) error {
	req := govici.NewMessage()
	setSelector(req, r.IKE, r.Child, r.IKEID, r.ChildID)
	if r.Reauth {
		set(req, "reauth", "yes")
	}
	if r.IKE == "" && r.Child == "" && r.IKEID == 0 && r.ChildID == 0 {
		return errors.New("rekey: need an IKE or CHILD_SA name or id")
	}
	_, err := c.call(ctx, "rekey", selectorName(r.IKE, r.Child, r.IKEID, r.ChildID), req, false)
	return err
}

// selectorName names an SA selector for error messages.
// setSelector names the SAs a rekey or terminate acts on.
func setSelector(req *govici.Message, ike, child string, ikeID, childID uint64) {
	set(req, "ike", ike)
	set(req, "child", child)
	if ikeID != 0 {
		set(req, "ike-id", strconv.FormatUint(ikeID, 10))
	}
	if childID != 0 {
		set(req, "child-id", strconv.FormatUint(childID, 10))
	}
}

func selectorName(ike, child string, ikeID, childID uint64) string {
	switch {
	case child != "":
		return child
	case ike != "":
		return ike
	case childID != 0:
		return "CHILD_SA #" + strconv.FormatUint(childID, 10)
	case ikeID != 0:
		return "IKE_SA #" + strconv.FormatUint(ikeID, 10)
	}
	return ""
}

// Version is charon's answer to version.
type Version struct {
	Daemon  string // e.g. charon
	Version string // strongSwan version, e.g. 5.9.8
	Sysname string
	Release string
	Machine string
}

// Version asks charon for its version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	resp, err := c.call(ctx, "version", "", nil, true)
	if err != nil {
		return Version{}, err
	}
	f := &fields{m: resp, path: "version"}
	v := Version{
		Daemon:  f.str("daemon"),
		Version: f.str("version"),
		Sysname: f.str("sysname"),
		Release: f.str("release"),
		Machine: f.str("machine"),
	}
	return v, f.err
}

// Stats is charon's answer to stats.
type Stats struct {
	UptimeRunning string // human-readable, e.g. "5 minutes"
	UptimeSince   string // e.g. "Jan 01 00:00:00 2025"

	WorkersTotal  uint64
	WorkersIdle   uint64
	WorkersActive Priorities // threads busy per job priority
	Queues        Priorities // jobs queued per priority
	Scheduled     uint64     // jobs scheduled for timed execution

	IKESAsTotal    uint64
	IKESAsHalfOpen uint64

	Plugins []string
}

// Priorities are counts per charon job priority.
type Priorities struct {
	Critical, High, Medium, Low uint64
}

// Stats asks charon for its statistics.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	resp, err := c.call(ctx, "stats", "", nil, true)
	if err != nil {
		return Stats{}, err
	}
	f := &fields{m: resp, path: "stats"}
	var s Stats
	if up := f.section("uptime"); up != nil {
		u := &fields{m: up, path: "stats uptime"}
		s.UptimeRunning, s.UptimeSince = u.str("running"), u.str("since")
		f.err = first(f.err, u.err)
	}
	if w := f.section("workers"); w != nil {
		wf := &fields{m: w, path: "stats workers"}
		s.WorkersTotal, s.WorkersIdle = wf.u64("total"), wf.u64("idle")
		var err error
		s.WorkersActive, err = priorities(wf.section("active"), "stats workers active")
		f.err = first(f.err, wf.err, err)
	}
	var qerr error
	s.Queues, qerr = priorities(f.section("queues"), "stats queues")
	f.err = first(f.err, qerr)
	s.Scheduled = f.u64("scheduled")
	if ike := f.section("ikesas"); ike != nil {
		i := &fields{m: ike, path: "stats ikesas"}
		s.IKESAsTotal, s.IKESAsHalfOpen = i.u64("total"), i.u64("half-open")
		f.err = first(f.err, i.err)
	}
	s.Plugins = f.list("plugins")
	return s, f.err
}

func priorities(m *govici.Message, path string) (Priorities, error) {
	if m == nil {
		return Priorities{}, nil
	}
	f := &fields{m: m, path: path}
	p := Priorities{Critical: f.u64("critical"), High: f.u64("high"), Medium: f.u64("medium"), Low: f.u64("low")}
	return p, f.err
}

func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Counters returns charon's global IKE event counters (get-counters), by
// counter name, e.g. "ike-rekey-init" → 3. It needs the counters plugin;
// without it the error matches ErrUnsupported.
func (c *Client) Counters(ctx context.Context) (map[string]uint64, error) {
	return c.counters(ctx, "")
}

// ConnCounters returns the counters of one connection (see Counters).
func (c *Client) ConnCounters(ctx context.Context, name string) (map[string]uint64, error) {
	return c.counters(ctx, name)
}

// noCounters is charon's errmsg when the counters plugin is not loaded.
const noCounters = "no counters available (plugin missing?)"

func (c *Client) counters(ctx context.Context, name string) (map[string]uint64, error) {
	req := govici.NewMessage()
	set(req, "name", name)
	resp, err := c.call(ctx, "get-counters", name, req, true)
	var ce *CommandError
	if errors.As(err, &ce) && ce.Message == noCounters {
		ce.Err = ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	f := &fields{m: resp, path: "get-counters"}
	all := f.section("counters")
	if f.err != nil {
		return nil, f.err
	}
	if all == nil {
		return nil, errors.New("get-counters: charon sent no counters")
	}
	// The global counters are in a section with an empty name.
	sec, _ := all.Get(name).(*govici.Message)
	if sec == nil {
		return nil, fmt.Errorf("%s: charon sent no counters for it", cmdPrefix("get-counters", name))
	}
	cf := &fields{m: sec, path: cmdPrefix("get-counters", name)}
	out := map[string]uint64{}
	for _, k := range sec.Keys() {
		out[k] = cf.u64(k)
	}
	return out, cf.err
}
