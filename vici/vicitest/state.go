package vicitest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	govici "github.com/strongswan/govici/vici"
)

// Msg builds a message from key/value pairs: values may be string,
// []string, *govici.Message, or any integer or bool (as govici's Set
// converts them). It panics on a bad pair: it is for literals in tests.
func Msg(kv ...any) *govici.Message {
	if len(kv)%2 != 0 {
		panic("vicitest.Msg: odd number of arguments")
	}
	m := govici.NewMessage()
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			panic(fmt.Sprintf("vicitest.Msg: key %v is not a string", kv[i]))
		}
		if err := m.Set(k, kv[i+1]); err != nil {
			panic(fmt.Sprintf("vicitest.Msg: %s: %v", k, err))
		}
	}
	return m
}

// Failed is the response charon sends when a command fails.
func Failed(format string, args ...any) *govici.Message {
	return Msg("success", "no", "errmsg", fmt.Sprintf(format, args...))
}

// OK is the response charon sends when a command succeeds.
func OK() *govici.Message { return Msg("success", "yes") }

// Shared is a secret loaded with load-shared.
type Shared struct {
	Type   string
	Data   string
	Owners []string
}

// Cert is a certificate loaded with load-cert.
type Cert struct {
	Type, Flag, Data string
}

type state struct {
	connNames []string
	conns     map[string]*govici.Message
	shared    map[string]Shared
	sharedIDs []string
	keys      map[string]string
	keyIDs    []string
	certs     []Cert
	sas       []*govici.Message
	uniqueID  int
}

func newState() state {
	return state{
		conns:  map[string]*govici.Message{},
		shared: map[string]Shared{},
		keys:   map[string]string{},
	}
}

// ConnNames returns the connections loaded over VICI, in load order.
func (s *Server) ConnNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.connNames)
}

// Conn returns the body of a loaded connection.
func (s *Server) Conn(name string) (*govici.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.state.conns[name]
	return m, ok
}

// Shared returns a loaded secret.
func (s *Server) Shared(id string) (Shared, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.state.shared[id]
	return v, ok
}

// SharedIDs returns the ids of the loaded secrets, in load order.
func (s *Server) SharedIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.sharedIDs)
}

// KeyIDs returns the ids of the loaded private keys, in load order.
func (s *Server) KeyIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.keyIDs)
}

// Certs returns the loaded certificates, in load order.
func (s *Server) Certs() []Cert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state.certs)
}

// SetSAs sets the IKE_SAs that list-sas streams: each message is the body
// of one list-sa event ({<ike name> = {...}}).
func (s *Server) SetSAs(sas ...*govici.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.sas = slices.Clone(sas)
}

func (s *Server) installDefaults() {
	h := map[string]Handler{
		"version": func(*Request) *govici.Message {
			return Msg("daemon", "charon", "version", "5.9.8", "sysname", "Linux",
				"release", "6.1.0-fake", "machine", "x86_64")
		},
		"stats":       s.stats,
		"load-conn":   s.loadConn,
		"unload-conn": s.unloadConn,
		"get-conns": func(*Request) *govici.Message {
			return Msg("conns", s.ConnNames())
		},
		"list-conns":    s.listConns,
		"list-policies": s.listPolicies,
		"load-shared":   s.loadShared,
		"unload-shared": s.unloadShared,
		"get-shared": func(*Request) *govici.Message {
			return Msg("keys", s.SharedIDs())
		},
		"load-key":   s.loadKey,
		"unload-key": s.unloadKey,
		"get-keys": func(*Request) *govici.Message {
			return Msg("keys", s.KeyIDs())
		},
		"load-cert": s.loadCert,
		"list-sas":  s.listSAs,
		"get-counters": func(*Request) *govici.Message {
			return Failed("no counters available (plugin missing?)")
		},
		"initiate":  s.initiate,
		"terminate": s.terminate,
		"rekey": func(r *Request) *govici.Message {
			if n := len(s.matchSAs(r.Message)); n > 0 {
				return Msg("success", "yes", "matches", strconv.Itoa(n))
			}
			return Failed("no matching SAs to rekey found")
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range h {
		s.handlers[k] = v
	}
}

func str(m *govici.Message, key string) string {
	v, _ := m.Get(key).(string)
	return v
}

func (s *Server) stats(*Request) *govici.Message {
	s.mu.Lock()
	n := len(s.state.sas)
	s.mu.Unlock()
	return Msg(
		"uptime", Msg("running", "5 minutes", "since", "Jan 01 00:00:00 2025"),
		"workers", Msg("total", "16", "idle", "11", "active",
			Msg("critical", "4", "high", "0", "medium", "1", "low", "0")),
		"queues", Msg("critical", "0", "high", "0", "medium", "0", "low", "0"),
		"scheduled", "3",
		"ikesas", Msg("total", strconv.Itoa(n), "half-open", "0"),
		"plugins", []string{"charon", "random", "nonce", "openssl", "kernel-netlink", "socket-default", "vici"},
	)
}

func (s *Server) loadConn(r *Request) *govici.Message {
	keys := r.Message.Keys()
	if len(keys) == 0 {
		return Failed("missing connection name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range keys {
		body, ok := r.Message.Get(name).(*govici.Message)
		if !ok {
			return Failed("invalid section: %s", name)
		}
		if _, ok := s.state.conns[name]; !ok {
			s.state.connNames = append(s.state.connNames, name)
		}
		s.state.conns[name] = body
	}
	return OK()
}

func (s *Server) unloadConn(r *Request) *govici.Message {
	name := str(r.Message, "name")
	if name == "" {
		return Failed("unload: missing connection name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state.conns[name]; !ok {
		return Failed("unload: connection '%s' not found", name)
	}
	delete(s.state.conns, name)
	s.state.connNames = slices.DeleteFunc(s.state.connNames, func(n string) bool { return n == name })
	return OK()
}

func (s *Server) listConns(r *Request) *govici.Message {
	want := str(r.Message, "ike")
	for _, name := range s.ConnNames() {
		if want != "" && name != want {
			continue
		}
		body, ok := s.Conn(name)
		if !ok {
			continue
		}
		r.Event("list-conn", Msg(name, connInfo(body)))
	}
	return govici.NewMessage()
}

// listPolicies imitates charon's list-policies: every child with a trap
// start action has its policies installed, as charon does when nothing
// fails; a child filter lists only that child's.
func (s *Server) listPolicies(r *Request) *govici.Message {
	only := str(r.Message, "child")
	for _, name := range s.ConnNames() {
		body, ok := s.Conn(name)
		if !ok {
			continue
		}
		ch, ok := body.Get("children").(*govici.Message)
		if !ok {
			continue
		}
		for _, cn := range ch.Keys() {
			c, ok := ch.Get(cn).(*govici.Message)
			if !ok || str(c, "start_action") != "trap" || (only != "" && cn != only) {
				continue
			}
			mode := strings.ToUpper(str(c, "mode"))
			if mode == "" {
				mode = "TUNNEL"
			}
			r.Event("list-policy", Msg(name+"/"+cn, Msg("child", cn, "ike", name, "mode", mode)))
		}
	}
	return govici.NewMessage()
}

// connInfo imitates charon's list-conn body for a loaded connection.
func connInfo(body *govici.Message) *govici.Message {
	list := func(key, def string) []string {
		if v, ok := body.Get(key).([]string); ok {
			return v
		}
		return []string{def}
	}
	version := "IKEv2"
	if str(body, "version") == "1" {
		version = "IKEv1"
	}
	out := Msg("local_addrs", list("local_addrs", "%any"), "remote_addrs", list("remote_addrs", "%any"),
		"version", version, "reauth_time", "0", "rekey_time", "14400", "unique", "UNIQUE_NO")
	round := map[string]int{}
	for _, k := range body.Keys() {
		for _, side := range []string{"local", "remote"} {
			if k == side || strings.HasPrefix(k, side+"-") {
				auth, _ := body.Get(k).(*govici.Message)
				if auth == nil {
					continue
				}
				round[side]++
				a := Msg("class", authClass(str(auth, "auth")))
				if id := str(auth, "id"); id != "" {
					a.Set("id", id)
				}
				out.Set(fmt.Sprintf("%s-%d", side, round[side]), a)
			}
		}
	}
	children := govici.NewMessage()
	if ch, ok := body.Get("children").(*govici.Message); ok {
		for _, name := range ch.Keys() {
			c, _ := ch.Get(name).(*govici.Message)
			if c == nil {
				continue
			}
			mode := strings.ToUpper(str(c, "mode"))
			if mode == "" {
				mode = "TUNNEL"
			}
			ts := func(key string) []string {
				if v, ok := c.Get(key).([]string); ok {
					return v
				}
				return []string{"dynamic"}
			}
			children.Set(name, Msg("mode", mode, "rekey_time", "3600", "rekey_bytes", "0",
				"rekey_packets", "0", "dpd_action", "clear", "close_action", "clear",
				"local-ts", ts("local_ts"), "remote-ts", ts("remote_ts")))
		}
	}
	out.Set("children", children)
	return out
}

func authClass(auth string) string {
	switch {
	case auth == "psk":
		return "pre-shared key"
	case strings.HasPrefix(auth, "pubkey"), strings.HasPrefix(auth, "rsa"), strings.HasPrefix(auth, "ecdsa"):
		return "public key"
	case auth == "":
		return "any"
	}
	return auth
}

func (s *Server) loadShared(r *Request) *govici.Message {
	typ := str(r.Message, "type")
	if typ == "" {
		return Failed("shared key type missing")
	}
	if typ != "IKE" && typ != "EAP" && typ != "XAUTH" && typ != "NTLM" && typ != "PPK" {
		return Failed("invalid shared key type: %s", typ)
	}
	data := str(r.Message, "data")
	if data == "" {
		return Failed("shared key data missing")
	}
	owners, _ := r.Message.Get("owners").([]string)
	id := str(r.Message, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" {
		s.state.uniqueID++
		id = fmt.Sprintf("vici-shared-%d", s.state.uniqueID)
	}
	if _, ok := s.state.shared[id]; !ok {
		s.state.sharedIDs = append(s.state.sharedIDs, id)
	}
	s.state.shared[id] = Shared{Type: typ, Data: data, Owners: slices.Clone(owners)}
	return OK()
}

func (s *Server) unloadShared(r *Request) *govici.Message {
	id := str(r.Message, "id")
	if id == "" {
		return Failed("unique identifier missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// charon answers success even for unknown ids.
	delete(s.state.shared, id)
	s.state.sharedIDs = slices.DeleteFunc(s.state.sharedIDs, func(n string) bool { return n == id })
	return OK()
}

func (s *Server) loadKey(r *Request) *govici.Message {
	if str(r.Message, "type") == "" {
		return Failed("key type missing")
	}
	data := str(r.Message, "data")
	if data == "" {
		return Failed("key data missing")
	}
	sum := sha1.Sum([]byte(data))
	id := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state.keys[id]; !ok {
		s.state.keyIDs = append(s.state.keyIDs, id)
	}
	s.state.keys[id] = data
	return Msg("success", "yes", "id", id)
}

func (s *Server) unloadKey(r *Request) *govici.Message {
	id := str(r.Message, "id")
	if id == "" {
		return Failed("key id missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state.keys[id]; !ok {
		return Failed("key with id %s not found", id)
	}
	delete(s.state.keys, id)
	s.state.keyIDs = slices.DeleteFunc(s.state.keyIDs, func(n string) bool { return n == id })
	return OK()
}

func (s *Server) loadCert(r *Request) *govici.Message {
	typ := str(r.Message, "type")
	if typ == "" {
		return Failed("certificate type missing")
	}
	flag := str(r.Message, "flag")
	if flag == "" {
		flag = "NONE"
	}
	data := str(r.Message, "data")
	if data == "" {
		return Failed("certificate data missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.certs = append(s.state.certs, Cert{Type: typ, Flag: flag, Data: data})
	return OK()
}

// matchSAs returns the list-sa bodies matching the ike/ike-id selectors of
// req; with a child selector, each IKE_SA with only that child's CHILD_SAs
// (as charon 5.9 answers: the IKE_SA is listed even when none is left).
func (s *Server) matchSAs(req *govici.Message) []*govici.Message {
	ike, ikeID, child := str(req, "ike"), str(req, "ike-id"), str(req, "child")
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*govici.Message
	for _, sa := range s.state.sas {
		for _, name := range sa.Keys() {
			body, _ := sa.Get(name).(*govici.Message)
			if body == nil {
				continue
			}
			if ike != "" && name != ike {
				continue
			}
			if ikeID != "" && str(body, "uniqueid") != ikeID {
				continue
			}
			if child != "" {
				sa = onlyChild(name, body, child)
			}
			out = append(out, sa)
		}
	}
	return out
}

// onlyChild is the list-sa message of IKE_SA name (body) with only the
// CHILD_SAs of child config child.
func onlyChild(name string, body *govici.Message, child string) *govici.Message {
	b := govici.NewMessage()
	for _, k := range body.Keys() {
		if k != "child-sas" {
			b.Set(k, body.Get(k))
		}
	}
	kept := govici.NewMessage()
	if cs, _ := body.Get("child-sas").(*govici.Message); cs != nil {
		for _, k := range cs.Keys() {
			if c, _ := cs.Get(k).(*govici.Message); c != nil && str(c, "name") == child {
				kept.Set(k, c)
			}
		}
	}
	b.Set("child-sas", kept)
	return Msg(name, b)
}

func (s *Server) listSAs(r *Request) *govici.Message {
	for _, sa := range s.matchSAs(r.Message) {
		r.Event("list-sa", sa)
	}
	return govici.NewMessage()
}

func (s *Server) initiate(r *Request) *govici.Message {
	child, ike := str(r.Message, "child"), str(r.Message, "ike")
	if child == "" && ike == "" {
		return Failed("missing configuration name")
	}
	typ, name := "CHILD_SA", child
	if child == "" {
		typ, name = "IKE_SA", ike
	}
	found := false
	for _, n := range s.ConnNames() {
		body, _ := s.Conn(n)
		if ike != "" && n != ike {
			continue
		}
		if child == "" {
			found = true
			break
		}
		if ch, ok := body.Get("children").(*govici.Message); ok && ch.Get(child) != nil {
			found = true
			break
		}
	}
	if !found {
		return Failed("%s config '%s' not found", typ, name)
	}
	r.Event("control-log", Msg("group", "IKE", "level", "0", "msg", fmt.Sprintf("initiating IKE_SA %s[1] to 192.0.2.1", name)))
	return OK()
}

func (s *Server) terminate(r *Request) *govici.Message {
	n := len(s.matchSAs(r.Message))
	if n == 0 {
		return Msg("success", "no", "matches", "0", "terminated", "0", "errmsg", "no matching SAs to terminate found")
	}
	return Msg("success", "yes", "matches", strconv.Itoa(n), "terminated", strconv.Itoa(n))
}
