package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
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
	// Prior, when set, holds connections an earlier Render made: those
	// made from the same inputs are taken from it (see Prior), and
	// Reused then says how many.
	Prior *Prior
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

	// keys are the connections' keys in a Prior (Options.Prior), by
	// their index in Conns; nil when rendered without one. folder is the
	// policy's folder (a Prior keeps its files by their names in it).
	keys   []connKey
	keyed  int // how many of keys are ok
	folder string
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
	// hash is Hash, for a connection taken from a Prior (which keeps
	// it); "" to be computed.
	hash string
}

// Hash identifies the connection's exact content: two renderings with the
// same hash load the same thing into charon. Secrets are not part of it.
func (c Conn) Hash() string {
	if c.hash != "" {
		return c.hash
	}
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
