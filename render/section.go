package render

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strconv"
	"sync"
)

// Section is an ordered set of settings, the common form of a swanctl.conf
// section and a VICI message section.
//
// A section is built as a tree of Items (Set, SetList, Sub) and then, once
// complete, may be frozen (Freeze): its settings are then kept packed in
// one string, a few hundred bytes for a connection whose tree takes some
// 2 KB in many small allocations; at thousands of connections that was
// most of what an apply held in memory. Every method reads both forms
// alike, hashes included; All gives the items. The subsections a frozen
// section gives are read-only copies: build first, then freeze.
type Section struct {
	items []Item
	// packed is the frozen form (see Freeze); "" when the section is a
	// tree (or empty).
	packed string
	// copied: a subsection a frozen section gave (Get, Subsection, All),
	// which a change would not reach; changing it panics.
	copied bool
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

// NewSection is a section of items (a tree).
func NewSection(items ...Item) *Section {
	return &Section{items: items}
}

// All returns the section's items in order (nil for a nil section). Of a
// tree they are its own, not to be changed; of a frozen section they are
// made for the call, their subsections frozen too.
func (s *Section) All() []Item {
	if s == nil {
		return nil
	}
	if s.packed == "" {
		return s.items
	}
	var out []Item
	for p := s.packed; p != ""; {
		var it packedItem
		it, p = nextPacked(p)
		out = append(out, it.item())
	}
	return out
}

// Len is the number of items.
func (s *Section) Len() int {
	if s == nil {
		return 0
	}
	if s.packed == "" {
		return len(s.items)
	}
	n := 0
	for p := s.packed; p != ""; n++ {
		_, p = nextPacked(p)
	}
	return n
}

// thaw makes a frozen section a tree again, for a change. Its
// subsections are then its own.
func (s *Section) thaw() {
	if s.copied {
		panic("render: a change to a copy of a frozen section's subsection would be lost; change the section through edit, before Freeze")
	}
	if s.packed != "" {
		s.items, s.packed = s.All(), ""
		for i := range s.items {
			if sub := s.items[i].Sec; sub != nil {
				sub.copied = false
			}
		}
	}
}

// Add appends an item.
func (s *Section) Add(it Item) *Section {
	s.thaw()
	s.items = append(s.items, it)
	return s
}

// Set appends a value.
func (s *Section) Set(key, value string) *Section {
	s.thaw()
	s.items = append(s.items, Item{Key: key, Value: value})
	return s
}

// SetList appends a list value.
func (s *Section) SetList(key string, values ...string) *Section {
	s.thaw()
	s.items = append(s.items, Item{Key: key, List: values, IsList: true})
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
	s.thaw()
	sub := &Section{}
	if n > 0 {
		sub.items = make([]Item, 0, n)
	}
	it := Item{Key: key, Sec: sub}
	if comment != "" {
		it.ItemExtra = &ItemExtra{Note: comment}
	}
	s.items = append(s.items, it)
	return sub
}

// Get returns the item with key, or nil (also on a nil section). Of a
// frozen section it is a copy.
func (s *Section) Get(key string) *Item {
	if s == nil {
		return nil
	}
	if s.packed != "" {
		if it, ok := s.find(key); ok {
			item := it.item()
			return &item
		}
		return nil
	}
	for i := range s.items {
		if s.items[i].Key == key {
			return &s.items[i]
		}
	}
	return nil
}

// find looks key up in a frozen section.
func (s *Section) find(key string) (packedItem, bool) {
	for p := s.packed; p != ""; {
		var it packedItem
		if it, p = nextPacked(p); it.key == key {
			return it, true
		}
	}
	return packedItem{}, false
}

// Value returns the value of key, or "".
func (s *Section) Value(key string) string {
	if s != nil && s.packed != "" {
		it, _ := s.find(key)
		return it.value
	}
	if it := s.Get(key); it != nil {
		return it.Value
	}
	return ""
}

// List returns the list value of key, or nil.
func (s *Section) List(key string) []string {
	if s != nil && s.packed != "" {
		if it, ok := s.find(key); ok && it.kind == packedList && it.n > 0 {
			return it.strings()
		}
		return nil
	}
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
	if s != nil && s.packed != "" {
		if it, ok := s.find(key); ok && it.kind == packedSection {
			return &Section{packed: it.sec, copied: true}
		}
		return nil
	}
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

// MarshalJSON writes the section as {"items": [...]}, frozen or not.
func (s Section) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Items []Item `json:"items"`
	}{s.All()})
}

// UnmarshalJSON reads what MarshalJSON writes, as a tree.
func (s *Section) UnmarshalJSON(b []byte) error {
	var v struct {
		Items []Item `json:"items"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.items, s.packed = v.Items, ""
	return nil
}

// Freeze packs a complete section into its frozen form (see Section).
// A section with files (certificates) or with an item that is more than
// one of a value, a list and a subsection stays a tree: the frozen form
// holds exactly what All gave before, or nothing.
func (s *Section) Freeze() {
	if s == nil || s.packed != "" || len(s.items) == 0 || !packable(s) {
		return
	}
	bp := packBufs.Get().(*[]byte)
	b := appendPacked((*bp)[:0], s)
	s.packed, s.items = string(b), nil
	*bp = b
	packBufs.Put(bp)
}

// edit is the subsection key, to be changed: s and it made trees again if
// they were frozen (a frozen section's Subsection is a copy).
func (s *Section) edit(key string) *Section {
	s.thaw()
	for i := range s.items {
		if it := &s.items[i]; it.Key == key && it.Sec != nil {
			it.Sec.thaw()
			return it.Sec
		}
	}
	return nil
}

// The frozen form: item after item, each a kind byte (with packedNote
// when it has a comment), its key, its comment, then a value, a list (a
// count, then the strings) or a subsection (its frozen form, as one
// string). A string is its length (uvarint), then its bytes.
const (
	packedValue   = 0
	packedList    = 1
	packedSection = 2
	packedNote    = 0x10
)

func packable(s *Section) bool {
	for i := range s.items {
		it := &s.items[i]
		if len(it.Files()) > 0 {
			return false
		}
		switch {
		case it.Sec != nil:
			if it.IsList || it.Value != "" || it.List != nil || it.Sec.packed == "" && !packable(it.Sec) {
				return false
			}
			if it.Sec.packed == "" && it.Sec.items != nil && len(it.Sec.items) == 0 {
				return false // empty, not nil: the frozen form has no such thing
			}
		case it.IsList:
			if it.Value != "" || (it.List != nil && len(it.List) == 0) {
				return false
			}
		default:
			if it.List != nil {
				return false
			}
		}
		if it.ItemExtra != nil && it.Note == "" {
			return false // an empty extra: All would not give it back
		}
	}
	return true
}

// packedSize is the length of s's frozen form, which precedes a frozen
// subsection in its parent's.
func packedSize(s *Section) int {
	n := 0
	for i := range s.items {
		it := &s.items[i]
		n += 1 + stringSize(it.Key)
		if it.Comment() != "" {
			n += stringSize(it.Comment())
		}
		switch {
		case it.Sec != nil:
			sub := it.Sec.packedLen()
			n += uvarintSize(uint64(sub)) + sub
		case it.IsList:
			n += uvarintSize(uint64(len(it.List)))
			for _, v := range it.List {
				n += stringSize(v)
			}
		default:
			n += stringSize(it.Value)
		}
	}
	return n
}

// packedLen is the length of s's frozen form, frozen or not.
func (s *Section) packedLen() int {
	if s.packed != "" {
		return len(s.packed)
	}
	return packedSize(s)
}

func stringSize(v string) int { return uvarintSize(uint64(len(v))) + len(v) }

func uvarintSize(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// appendPacked appends s's frozen form.
func appendPacked(b []byte, s *Section) []byte {
	for i := range s.items {
		it := &s.items[i]
		kind := byte(packedValue)
		switch {
		case it.Sec != nil:
			kind = packedSection
		case it.IsList:
			kind = packedList
		}
		note := it.Comment()
		if note != "" {
			kind |= packedNote
		}
		b = append(b, kind)
		b = appendPackedString(b, it.Key)
		if note != "" {
			b = appendPackedString(b, note)
		}
		switch kind &^ packedNote {
		case packedSection:
			b = binary.AppendUvarint(b, uint64(it.Sec.packedLen()))
			if it.Sec.packed != "" {
				b = append(b, it.Sec.packed...)
			} else {
				b = appendPacked(b, it.Sec)
			}
		case packedList:
			b = binary.AppendUvarint(b, uint64(len(it.List)))
			for _, v := range it.List {
				b = appendPackedString(b, v)
			}
		default:
			b = appendPackedString(b, it.Value)
		}
	}
	return b
}

func appendPackedString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// packBufs are the buffers sections are frozen in.
var packBufs = sync.Pool{New: func() any { return new([]byte) }}

// packedItem is one item of a frozen section, its strings parts of it.
type packedItem struct {
	kind       byte // without packedNote
	key, note  string
	value, sec string
	list       string // of a list: its strings, packed
	n          int    // of a list: how many
}

// nextPacked reads the item p starts with; it returns the rest.
func nextPacked(p string) (packedItem, string) {
	var it packedItem
	kind := p[0]
	p = p[1:]
	it.kind = kind &^ packedNote
	it.key, p = packedString(p)
	if kind&packedNote != 0 {
		it.note, p = packedString(p)
	}
	switch it.kind {
	case packedSection:
		it.sec, p = packedString(p)
	case packedList:
		n, w := packedUvarint(p)
		p = p[w:]
		rest := p
		for range n {
			_, rest = packedString(rest)
		}
		it.list, it.n, p = p[:len(p)-len(rest)], int(n), rest
	default:
		it.value, p = packedString(p)
	}
	return it, p
}

func packedString(p string) (string, string) {
	n, w := packedUvarint(p)
	return p[w : w+int(n)], p[w+int(n):]
}

// packedUvarint is binary.Uvarint of a string (no copy).
func packedUvarint(p string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	panic("render: a frozen section is cut short")
}

// strings are a list item's values.
func (it packedItem) strings() []string {
	out := make([]string, 0, it.n)
	for p := it.list; p != ""; {
		var v string
		v, p = packedString(p)
		out = append(out, v)
	}
	return out
}

// item is the Item it was frozen from.
func (it packedItem) item() Item {
	out := Item{Key: it.key}
	switch it.kind {
	case packedSection:
		out.Sec = &Section{packed: it.sec, copied: true}
	case packedList:
		out.IsList = true
		if it.n > 0 {
			out.List = it.strings()
		}
	default:
		out.Value = it.value
	}
	if it.note != "" {
		out.ItemExtra = &ItemExtra{Note: it.note}
	}
	return out
}

// appendHash appends what identifies the section's content (hashed by
// Hash, IKEHash and ChildHashes): length-prefixed fields, unambiguous
// and cheap (no fmt, one hash call per connection). A frozen section
// gives the same as its tree, without making its items.
func (s *Section) appendHash(b []byte) []byte {
	if s == nil {
		return b
	}
	if s.packed != "" {
		return appendPackedHash(b, s.packed, "")
	}
	for i := range s.items {
		b = s.items[i].appendHash(b)
	}
	return b
}

// appendPackedHash is appendHash of a frozen section, without the item
// skip (if not "").
func appendPackedHash(b []byte, p, skip string) []byte {
	for p != "" {
		var it packedItem
		it, p = nextPacked(p)
		if skip != "" && it.key == skip {
			continue
		}
		b = it.appendHash(b)
	}
	return b
}

func (it packedItem) appendHash(b []byte) []byte {
	b = putHashField(b, 'k', it.key)
	switch it.kind {
	case packedSection:
		b = append(b, '{')
		b = appendPackedHash(b, it.sec, "")
		b = append(b, '}')
	case packedList:
		b = append(b, '[')
		for p := it.list; p != ""; {
			var v string
			v, p = packedString(p)
			b = putHashField(b, 'l', v)
		}
		b = append(b, ']')
	default:
		b = putHashField(b, 'v', it.value)
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

// Hash identifies a section's exact content.
func (s *Section) Hash() string {
	return sum32(s.appendHash)
}

// IKEHash identifies the connection's settings without its children:
// when it changes, charon re-applies every child of the connection.
func (c Conn) IKEHash() string {
	return sum32(func(b []byte) []byte {
		if c.Body != nil && c.Body.packed != "" {
			return appendPackedHash(b, c.Body.packed, "children")
		}
		items := c.Body.All()
		for i := range items {
			if it := &items[i]; it.Key != "children" {
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
		for _, it := range ch.All() {
			if it.Sec != nil {
				out[it.Key] = it.Sec.Hash()
			}
		}
	}
	return out
}
