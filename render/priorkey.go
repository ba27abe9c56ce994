package render

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// Keys: what a connection is made from, digested (see Prior).

// priorKeys is the renderer's part for a Prior: the digest of what every
// connection shares, each rule's digest (made when first needed), and,
// once a peer has more than one rule, the negotiate rules to each peer
// in order.
type priorKeys struct {
	global [32]byte
	rules  [][32]byte // by rule, once made (made[i])
	made   []bool
	byPeer map[string][]peerUse // nil until needed
	buf    []byte               // a connection's key is made in
	rbuf   []byte               // a rule's digest is made in
}

// appendGlobal appends what every connection of a may read besides its
// rules: the endpoint as resolved and as written (its identity defaults
// to an address only when not written), the policy's settings but its
// rules (each connection's are in its key), the file's assignment and
// whether it is a folder. Whole, by appendValue, so that a setting added
// to either is in the key without a change here
// (TestPriorKeyCoversGlobals).
func appendGlobal(b []byte, a *model.Assigned) []byte {
	b = appendValue(b, reflect.ValueOf(a.Endpoint))
	if p := a.Policy; p != nil {
		settings := *p
		settings.Rules = nil
		b = appendValue(append(b, 'P'), reflect.ValueOf(settings))
	}
	if f := a.File; f != nil {
		b = appendValue(append(b, 'E'), reflect.ValueOf(f.Endpoint))
		b = appendString(b, f.Assign)
		b = appendBool(b, f.IsFolder())
	}
	return b
}

// ikePeerOf is a peer of a rule as its connection names it.
func ikePeerOf(rule *model.ResolvedRule, peer string) string {
	if !rule.Tunnel.IsValid() && peer == "any" {
		return "%any"
	}
	return peer
}

// usesOf are the negotiate rules to each peer, in order, with the peer
// as each names it.
func (r *renderer) usesOf() map[string][]peerUse {
	uses := make(map[string][]peerUse, len(r.a.Rules))
	for i := range r.a.Rules {
		rule := &r.a.Rules[i]
		if rule.Action.Action != model.Negotiate || i >= len(r.peers) {
			continue
		}
		for _, peer := range r.peers[i] {
			pk := peerKey(ikePeerOf(rule, peer))
			uses[pk] = append(uses[pk], peerUse{i, peer})
		}
	}
	return uses
}

// peerUse is a rule to a peer, with the peer as that rule names it.
type peerUse struct {
	rule int
	peer string
}

func (r *renderer) startPrior() {
	if r.o.Prior == nil || noFreeze || r.a.Policy.DefaultResponseRule {
		return
	}
	k := &priorKeys{rules: make([][32]byte, len(r.a.Rules)), made: make([]bool, len(r.a.Rules))}
	b := append([]byte(nil), r.o.Prior.salt[:]...)
	b = appendString(b, string(r.o.Backend))
	b = appendGlobal(b, r.a)
	k.global = sha256.Sum256(b)
	r.prior = k
	r.keyOf = make([]connKey, 0, len(r.a.Rules))
}

// keyConn notes the key of connection ci (made or taken).
func (r *renderer) keyConn(ci int, key [32]byte, taken bool) {
	for len(r.keyOf) <= ci {
		r.keyOf = append(r.keyOf, connKey{})
	}
	r.keyOf[ci] = connKey{key: key, ok: true, taken: taken}
}

// isTaken says whether connection ci was taken from the Prior.
func (r *renderer) isTaken(ci int) bool { return ci < len(r.keyOf) && r.keyOf[ci].taken }

// takePrior takes the connection to ikePeer (peerKey pk) from the Prior when it holds
// its key, for the peer's first rule (the connection's name claimed): its
// children's names are claimed, its secrets made. It returns the key.
func (r *renderer) takePrior(ikePeer, pk string, rule model.ResolvedRule, where string) ([32]byte, bool) {
	key := r.connKeyOf(ikePeer, pk)
	conn, ok := r.o.Prior.take(key)
	if !ok {
		return key, false
	}
	for _, ch := range conn.Children {
		r.claimOf(ch.Name, claimed{"child", where}, rule.Line, where)
	}
	ci := len(r.res.Conns)
	r.res.Conns = append(r.res.Conns, conn)
	if r.a.File.IsFolder() {
		// Its files by their names in the folder: this folder's. The
		// rule's is where its line is (the key holds that file's name);
		// its children's are most often that one too.
		c := &r.res.Conns[ci]
		kept := c.Origin.File
		c.Origin.File, _ = r.a.File.Locate(rule.Line)
		// (Its children's list is its own: a Prior gives each once.)
		for i := range c.Children {
			if f := c.Children[i].File; f == kept {
				c.Children[i].File = c.Origin.File
			} else {
				c.Children[i].File = r.inThisFolder(f)
			}
		}
	}
	r.keyConn(ci, key, true)
	r.peerConn[pk] = ci
	r.peerRule[ci] = firstRule{name: rule.Name, auth: rule.Auth}
	r.authMaterial(conn.Name, ikePeer, rule.Auth, rule.Line, where)
	return key, true
}

// inThisFolder is a file of a connection taken from a Prior (folderFile)
// in the folder of the policy rendered.
func (r *renderer) inThisFolder(file string) string {
	if name, ok := strings.CutPrefix(file, inFolder); ok {
		return r.a.File.Path + "/" + name
	}
	return file
}

// connKeyOf is the key of the connection to ikePeer (peerKey pk), made
// by the rule being rendered, its first: the digest of what all share,
// then each rule to the peer with the peer as it names it. A peer whose
// only rule this is (the last rule to it, lastUse) has that rule's
// fields in its key as they are; one with more their digests.
func (r *renderer) connKeyOf(ikePeer, pk string) [32]byte {
	k := r.prior
	b := append(k.buf[:0], k.global[:]...)
	if r.lastUse[pk] == r.pos {
		rule := &r.a.Rules[r.pos]
		b = append(b, 'S')
		b = r.appendRuleOf(b, rule)
		for _, peer := range r.peers[r.pos] {
			if peerKey(ikePeerOf(rule, peer)) == pk {
				b = appendString(b, peer)
			}
		}
	} else {
		if k.byPeer == nil {
			k.byPeer = r.usesOf()
		}
		b = append(b, 'M')
		for _, u := range k.byPeer[pk] {
			if !k.made[u.rule] {
				k.rules[u.rule], k.made[u.rule] = r.ruleDigest(u.rule), true
			}
			b = append(b, k.rules[u.rule][:]...)
			b = appendString(b, u.peer)
		}
	}
	b = appendString(b, ikePeer)
	k.buf = b
	return sha256.Sum256(b)
}

// ruleDigest digests rule i (appendRuleOf).
func (r *renderer) ruleDigest(i int) [32]byte {
	b := r.appendRuleOf(r.prior.rbuf[:0], &r.a.Rules[i])
	r.prior.rbuf = b
	return sha256.Sum256(b)
}

// appendRuleOf appends a rule whole (appendRule). In a folder the lines
// of the rule and its filters are numbered across the folder's files: the
// file and line each is at are appended instead, so that a line more in
// one file changes no key of the rules in the files after it.
func (r *renderer) appendRuleOf(b []byte, rule *model.ResolvedRule) []byte {
	folder := r.a.File != nil && r.a.File.IsFolder()
	b = appendRule(b, rule, !folder)
	if folder {
		dir := r.a.File.Path
		f, l := r.a.File.Locate(rule.Line)
		name, _ := nameIn(dir, f)
		b = appendInt(appendString(b, name), l)
		for _, flt := range rule.Filters {
			f, l := r.a.File.Locate(flt.Line)
			// The file's name only when it is not the one before.
			if n, _ := nameIn(dir, f); n != name {
				name = n
				b = appendString(append(b, 'f'), name)
			} else {
				b = append(b, 's')
			}
			b = appendInt(b, l)
		}
	}
	return b
}

// appendRule appends every field of a rule, of what it resolved to and
// of the filter list and rule it was written as (but secret values), as
// appendValue would and some ten times faster; lines only with lines.
// TestPriorKeyCoversEveryField changes each field and checks that the
// form does.
func appendRule(b []byte, r *model.ResolvedRule, lines bool) []byte {
	b = appendInt(b, r.Index)
	b = appendString(b, r.Name)
	if lines {
		b = appendInt(b, r.Line)
	}
	b = appendString(b, string(r.Network))
	b = appendIP(b, r.Tunnel)
	if w := r.Rule; w == nil {
		b = append(b, 'n')
	} else {
		b = append(b, 'P')
		for _, s := range [...]string{w.Name, w.FilterList, w.FilterAction, string(w.Network), w.TunnelEndpoint} {
			b = appendString(b, s)
		}
		b = appendBool(b, w.Disabled)
		b = binary.AppendUvarint(b, uint64(len(w.Authentication)))
		for i := range w.Authentication {
			a := &w.Authentication[i]
			for _, s := range [...]string{string(a.Method), a.SecretFile, a.SecretEnv, a.CA, a.Certificate, a.PrivateKey, a.PeerID} {
				b = appendString(b, s)
			}
		}
	}
	if l := r.List; l == nil {
		b = append(b, 'n')
	} else {
		b = append(b, 'P')
		b = appendString(appendString(b, l.Name), l.Description)
		b = binary.AppendUvarint(b, uint64(len(l.Filters)))
		for i := range l.Filters {
			f := &l.Filters[i]
			b = appendString(appendString(appendString(b, f.Description), f.Source), f.Destination)
			b = appendAny(appendAny(appendAny(b, f.Protocol), f.SourcePort), f.DestinationPort)
			if f.Mirrored == nil {
				b = append(b, 'n')
			} else {
				b = appendBool(append(b, 'P'), *f.Mirrored)
			}
		}
	}
	a := &r.Action
	for _, s := range [...]string{a.Name, string(a.Action), string(a.Security), a.PFSGroup} {
		b = appendString(b, s)
	}
	b = appendBool(appendBool(b, a.PFS), a.Guard)
	for _, l := range [...][]string{a.ESPEnc, a.ESPInteg, a.AHInteg} {
		b = appendStrings(b, l)
	}
	b = binary.AppendVarint(binary.AppendVarint(b, a.RekeySecs), a.RekeyKB)
	b = binary.AppendUvarint(b, uint64(len(r.Filters)))
	for i := range r.Filters {
		f := &r.Filters[i]
		b = appendInt(b, f.Index)
		if lines {
			b = appendInt(b, f.Line)
		}
		b = appendAddr(appendAddr(b, f.Src), f.Dst)
		b = appendString(appendInt(b, f.Proto), f.ProtoKW)
		b = appendInt(appendInt(b, f.SrcPort), f.DstPort)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Auth)))
	for i := range r.Auth {
		u := &r.Auth[i]
		for _, s := range [...]string{string(u.Method), u.Source, u.CAPath, u.CertPath, u.KeyPath, u.PeerID} {
			b = appendString(b, s)
		}
		b = appendBytes(appendBytes(b, u.CA), u.Cert)
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 'T')
	}
	return append(b, 'f')
}

func appendBytes(b []byte, v []byte) []byte {
	if v == nil {
		return append(b, 'n')
	}
	b = binary.AppendUvarint(append(b, 'B'), uint64(len(v)))
	return append(b, v...)
}

func appendStrings(b []byte, l []string) []byte {
	if l == nil {
		return append(b, 'n')
	}
	b = binary.AppendUvarint(append(b, 'a'), uint64(len(l)))
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

func appendAddr(b []byte, a model.Addr) []byte {
	b = appendInt(b, int(a.Kind))
	b = appendIP(b, a.Prefix.Addr())
	b = appendInt(b, a.Prefix.Bits())
	return appendString(appendString(b, a.Name), a.Text)
}

// appendIP appends an address as MarshalBinary gives it (its 4 or 16
// bytes and zone), without allocating.
func appendIP(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, 'n')
	case a.Is4():
		v := a.As4()
		return append(append(b, '4'), v[:]...)
	}
	v := a.As16()
	return appendString(append(append(b, '6'), v[:]...), a.Zone())
}

// appendAny appends a value as decoded from TOML: the usual kinds
// directly, any other as appendValue does.
func appendAny(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, 'n')
	case int64:
		return binary.AppendVarint(append(b, 'i'), x)
	case string:
		return appendString(append(b, 's'), x)
	case bool:
		return appendBool(append(b, 'b'), x)
	}
	return appendValue(appendString(append(b, 'I'), reflect.TypeOf(v).String()), reflect.ValueOf(v))
}

var (
	secretType    = reflect.TypeFor[model.Secret]()
	marshalerType = reflect.TypeFor[encoding.BinaryMarshaler]()
)

// appendValue appends v, every field of it, so that two values that
// differ anywhere (but in a secret's value) append differently: kinds
// and lengths are written along, pointers followed. Secret values are
// written as a mark only: a connection's settings never hold one.
func appendValue(b []byte, v reflect.Value) []byte {
	t := v.Type()
	if t == secretType {
		return append(b, 'S')
	}
	if v.CanInterface() && t.Implements(marshalerType) && v.Kind() != reflect.Pointer {
		m, err := v.Interface().(encoding.BinaryMarshaler).MarshalBinary()
		if err == nil {
			return appendString(append(b, 'M'), string(m))
		}
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 'T')
		}
		return append(b, 'f')
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(append(b, 'i'), v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return binary.AppendUvarint(append(b, 'u'), v.Uint())
	case reflect.Float32, reflect.Float64:
		return binary.LittleEndian.AppendUint64(append(b, 'd'), math.Float64bits(v.Float()))
	case reflect.String:
		return appendString(append(b, 's'), v.String())
	case reflect.Slice:
		if v.IsNil() {
			return append(b, 'n')
		}
		if t.Elem().Kind() == reflect.Uint8 {
			return appendString(append(b, 'B'), string(v.Bytes()))
		}
		fallthrough
	case reflect.Array:
		b = binary.AppendUvarint(append(b, 'a'), uint64(v.Len()))
		for i := range v.Len() {
			b = appendValue(b, v.Index(i))
		}
		return b
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(b, 'n')
		}
		if v.Kind() == reflect.Interface {
			b = appendString(append(b, 'I'), v.Elem().Type().String())
		} else {
			b = append(b, 'P')
		}
		return appendValue(b, v.Elem())
	case reflect.Struct:
		b = append(b, '{')
		for i := range v.NumField() {
			b = appendValue(b, v.Field(i))
		}
		return append(b, '}')
	case reflect.Map:
		if v.IsNil() {
			return append(b, 'n')
		}
		// In the order of the keys' forms.
		type kv struct{ k, v []byte }
		var all []kv
		for it := v.MapRange(); it.Next(); {
			all = append(all, kv{appendValue(nil, it.Key()), appendValue(nil, it.Value())})
		}
		slices.SortFunc(all, func(x, y kv) int { return bytes.Compare(x.k, y.k) })
		b = binary.AppendUvarint(append(b, 'm'), uint64(len(all)))
		for _, e := range all {
			b = append(append(b, e.k...), e.v...)
		}
		return b
	}
	// Functions, channels and unsafe pointers have no place in a model:
	// a key that cannot say what it covers covers nothing.
	panic("render: a policy model value of kind " + v.Kind().String() + " cannot be keyed")
}
