package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"sync"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/model"
)

// Backend is the IPsec backend charon uses on the target host.
type Backend string

// Backends.
const (
	// Kernel is the Linux kernel's XFRM (charon's kernel-netlink plugin):
	// transport and tunnel mode, trap policies, pass and drop shunts.
	Kernel Backend = "kernel"
	// LibIPsec is charon's userspace IPsec (kernel-libipsec plugin): on
	// strongSwan 5.9 ESP in tunnel mode only, no acquires from trap
	// policies, and no pass or drop shunts.
	LibIPsec Backend = "libipsec"
)

// ParseBackend checks a backend name.
func ParseBackend(s string) (Backend, error) {
	switch Backend(s) {
	case "", Kernel:
		return Kernel, nil
	case LibIPsec:
		return LibIPsec, nil
	}
	return "", fmt.Errorf("unknown IPsec backend %q: use \"kernel\" or \"libipsec\"", s)
}

// Options tune rendering.
type Options struct {
	Backend Backend
}

// Result is the intermediate representation of an assigned policy: every
// connection, secret, certificate and key swanmgr loads into charon. Both
// the swanctl.conf text (WriteSwanctl) and the VICI messages (ConnMessage,
// SecretMessage, ...) are produced from it, so they cannot disagree.
type Result struct {
	Source  string // the policy file
	Policy  string
	Backend Backend
	Conns   []Conn
	Secrets []Secret
	Certs   []Cert
	Keys    []Key
	// Guard is the nftables guard that enforces the policy's negotiate and
	// block rules; nil when no rule is guarded.
	Guard *guard.Ruleset
	// Warnings are what the backend will do differently from Windows
	// with this policy (validate prints them; nothing is refused).
	Warnings model.Problems
}

// Origin maps a rendered connection back to the policy model.
type Origin struct {
	Policy     string `json:"policy"`
	Rule       string `json:"rule"`
	RuleIndex  int    `json:"rule_index"` // -1 for the default response rule
	FilterList string `json:"filter_list,omitempty"`
	Action     string `json:"action"`
	Peer       string `json:"peer,omitempty"` // empty for permit/block rules
	Line       int    `json:"line,omitempty"`
	File       string `json:"file,omitempty"` // the rule's file, for a folder policy (Line is in it)
}

// ChildOrigin maps a rendered child back to its filter and rule. All
// negotiate rules to one peer become children of one connection (charon
// picks one peer config per peer, and a CHILD_SA for another rule's traffic
// is looked up only among that config's children), so a child names its
// own rule, which need not be the connection's (Origin.Rule, the first).
type ChildOrigin struct {
	Name        string `json:"name"`
	FilterIndex int    `json:"filter_index"` // 0-based; -1 for the default response rule
	Line        int    `json:"line,omitempty"`
	File        string `json:"file,omitempty"` // the filter's file, for a folder policy (Line is in it)
	Summary     string `json:"summary"`        // "me → 172.31.67.244 tcp/6667"
	// Rule and RuleIndex: the child's rule; Rule is empty in records
	// written before children carried it (then the connection's rule).
	Rule       string `json:"rule,omitempty"`
	RuleIndex  int    `json:"rule_index,omitempty"`
	FilterList string `json:"filter_list,omitempty"`
}

// RuleOf is the rule a child of a connection with origin o belongs to.
func (co ChildOrigin) RuleOf(o Origin) string {
	if co.Rule != "" {
		return co.Rule
	}
	return o.Rule
}

// Rules returns the distinct rules of a connection's children, the
// connection's own first.
func Rules(o Origin, children []ChildOrigin) []string {
	out := []string{o.Rule}
	for _, co := range children {
		r := co.RuleOf(o)
		seen := false
		for _, x := range out {
			seen = seen || x == r
		}
		if !seen {
			out = append(out, r)
		}
	}
	return out
}

// Conn is one swanctl connection.
type Conn struct {
	Name     string
	Origin   Origin
	Children []ChildOrigin
	Body     *Section // the connection's settings, as sent in load-conn
	Comment  string
}

// Hash identifies the connection's exact content: two renderings with the
// same hash load the same thing into charon. Secrets are not part of it.
func (c Conn) Hash() string {
	return sum32(func(b []byte) []byte {
		b = append(b, c.Name...)
		b = append(b, '\n')
		return c.Body.appendHash(b)
	})
}

// Secret is a preshared key for load-shared or a swanctl.conf secrets entry.
type Secret struct {
	Name   string // stable id, "ike-..." (valid as a swanctl.conf secrets section)
	Type   string // "IKE"
	Owners []string
	Data   model.Secret
	Conns  []string // the connections that use it
}

// Cert is a certificate for load-cert.
type Cert struct {
	Path string
	Flag string // "NONE" (end entity) or "CA"
	Data []byte
}

// Key is a private key for load-key.
type Key struct {
	Name string // "private-..." section name in swanctl.conf
	Path string
	Data model.Secret
}

// Section is an ordered set of settings, the common form of a swanctl.conf
// section and a VICI message section.
type Section struct {
	Items []Item `json:"items"`
}

// Item is one setting: a value, a list, or a subsection. A list of files
// is written as file names in swanctl.conf and sent as their contents over
// VICI (certificates).
//
// What few items have (files, a comment) is kept apart (ItemExtra), so
// that the hundreds of thousands of items of a large policy take 80
// bytes each instead of 112; its fields appear in JSON as before, and
// are read with the Files and Comment methods.
type Item struct {
	Key    string   `json:"k"`
	Value  string   `json:"v,omitempty"`
	List   []string `json:"l,omitempty"`
	IsList bool     `json:"il,omitempty"`
	Sec    *Section `json:"s,omitempty"`
	*ItemExtra
}

// ItemExtra holds the rarer parts of an Item.
type ItemExtra struct {
	FileRefs []FileRef `json:"f,omitempty"`
	Note     string    `json:"c,omitempty"`
}

// Files returns the item's files (certificates), or nil.
func (it *Item) Files() []FileRef {
	if it.ItemExtra == nil {
		return nil
	}
	return it.FileRefs
}

// Comment returns the item's comment (of a subsection), or "".
func (it *Item) Comment() string {
	if it.ItemExtra == nil {
		return ""
	}
	return it.Note
}

// FilesItem is a setting that lists files.
func FilesItem(key string, files ...FileRef) Item {
	return Item{Key: key, ItemExtra: &ItemExtra{FileRefs: files}}
}

// FileRef is a file whose name goes into swanctl.conf and whose data goes
// over VICI.
type FileRef struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
}

// Set appends a value.
func (s *Section) Set(key, value string) *Section {
	s.Items = append(s.Items, Item{Key: key, Value: value})
	return s
}

// SetList appends a list value.
func (s *Section) SetList(key string, values ...string) *Section {
	s.Items = append(s.Items, Item{Key: key, List: values, IsList: true})
	return s
}

// Sub appends and returns a subsection.
func (s *Section) Sub(key, comment string) *Section {
	return s.subCap(key, comment, 0)
}

// subCap is Sub with room for n items (render knows how many most
// sections get: growing them one append at a time cost a third of
// render's allocations).
func (s *Section) subCap(key, comment string, n int) *Section {
	sub := &Section{}
	if n > 0 {
		sub.Items = make([]Item, 0, n)
	}
	it := Item{Key: key, Sec: sub}
	if comment != "" {
		it.ItemExtra = &ItemExtra{Note: comment}
	}
	s.Items = append(s.Items, it)
	return sub
}

// Get returns the item with key, or nil (also on a nil section).
func (s *Section) Get(key string) *Item {
	if s == nil {
		return nil
	}
	for i := range s.Items {
		if s.Items[i].Key == key {
			return &s.Items[i]
		}
	}
	return nil
}

// Value returns the value of key, or "".
func (s *Section) Value(key string) string {
	if it := s.Get(key); it != nil {
		return it.Value
	}
	return ""
}

// List returns the list value of key, or nil.
func (s *Section) List(key string) []string {
	if it := s.Get(key); it != nil {
		return it.List
	}
	return nil
}

// Files returns the files of key, or nil.
func (s *Section) Files(key string) []FileRef {
	if it := s.Get(key); it != nil {
		return it.Files()
	}
	return nil
}

// Subsection returns the subsection key, or nil.
func (s *Section) Subsection(key string) *Section {
	if it := s.Get(key); it != nil {
		return it.Sec
	}
	return nil
}

// Child returns the settings of one of a connection body's children, or nil.
func (s *Section) Child(name string) *Section {
	return s.Subsection("children").Subsection(name)
}

// Selectors parses the traffic selectors of key ("local_ts" or
// "remote_ts"), with "dynamic" resolved to host.
func (s *Section) Selectors(key string, host netip.Addr) ([]TS, error) {
	var out []TS
	for _, v := range s.List(key) {
		t, err := ParseTS(v)
		if err != nil {
			return nil, err
		}
		out = append(out, t.Resolve(host))
	}
	return out, nil
}

// appendHash appends what identifies the section's content (hashed by
// Hash, IKEHash and ChildHashes): length-prefixed fields, unambiguous
// and cheap (no fmt, one hash call per connection).
func (s *Section) appendHash(b []byte) []byte {
	if s == nil {
		return b
	}
	for i := range s.Items {
		b = s.Items[i].appendHash(b)
	}
	return b
}

func (it *Item) appendHash(b []byte) []byte {
	b = putHashField(b, 'k', it.Key)
	switch {
	case it.Sec != nil:
		b = append(b, '{')
		b = it.Sec.appendHash(b)
		b = append(b, '}')
	case len(it.Files()) > 0:
		for _, f := range it.Files() {
			sum := sha256.Sum256(f.Data)
			b = putHashField(b, 'f', string(sum[:]))
		}
	case it.IsList:
		b = append(b, '[')
		for _, v := range it.List {
			b = putHashField(b, 'l', v)
		}
		b = append(b, ']')
	default:
		b = putHashField(b, 'v', it.Value)
	}
	return b
}

func putHashField(b []byte, tag byte, v string) []byte {
	b = append(b, tag)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

// hashBufs are the buffers hashes are made in: a connection's are a few
// KB, and a plan of thousands hashes each once or more.
var hashBufs = sync.Pool{New: func() any { return new([]byte) }}

// sum32 hashes what fill appends, as the 32 hex digits hashes are
// recorded with.
func sum32(fill func([]byte) []byte) string {
	bp := hashBufs.Get().(*[]byte)
	b := fill((*bp)[:0])
	sum := sha256.Sum256(b)
	*bp = b
	hashBufs.Put(bp)
	return hex.EncodeToString(sum[:16])
}

// ConnNames returns the names of all connections, sorted.
func (r *Result) ConnNames() []string {
	var ns []string
	for _, c := range r.Conns {
		ns = append(ns, c.Name)
	}
	sort.Strings(ns)
	return ns
}

// Conn returns the connection named name, or nil.
func (r *Result) Conn(name string) *Conn {
	for i := range r.Conns {
		if r.Conns[i].Name == name {
			return &r.Conns[i]
		}
	}
	return nil
}

// Hash identifies a section's exact content.
func (s *Section) Hash() string {
	return sum32(s.appendHash)
}

// IKEHash identifies the connection's settings without its children:
// when it changes, charon re-applies every child of the connection.
func (c Conn) IKEHash() string {
	return sum32(func(b []byte) []byte {
		for i := range c.Body.Items {
			if it := &c.Body.Items[i]; it.Key != "children" {
				b = it.appendHash(b)
			}
		}
		return b
	})
}

// ChildHashes identifies each child's settings, by child name.
func (c Conn) ChildHashes() map[string]string {
	out := map[string]string{}
	if ch := c.Body.Subsection("children"); ch != nil {
		for _, it := range ch.Items {
			if it.Sec != nil {
				out[it.Key] = it.Sec.Hash()
			}
		}
	}
	return out
}
