package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"unsafe"
)

// A Prior holds the connections an earlier Render made, each under the
// key of everything it was made from: the rules to its peer (each rule
// whole: name, line, filter list, filter action, authentication, with
// what they resolved to, secret values left out), the peer, the
// endpoint, the policy's and the file's settings (but their rules), the
// backend and the program. Render given
// a Prior takes a connection whose key it holds as it was instead of
// rendering it again; one whose key it does not hold is rendered. A
// render that finds any problem is made again without the Prior, so that
// what it reports is what Render alone reports.
//
// A connection is kept only when its settings are frozen (no files, such
// as certificates, in them) and the policy has no default response rule
// (which adds a child to every connection at the end). Connections hold
// no secret (preshared keys and private keys are Result.Secrets and
// Result.Keys, made on every Render), so neither does a Prior's form.
type Prior struct {
	salt [32]byte
	have map[[32]byte]*Conn
	used int
	// spent: a Render took what it could (then left is how many it did
	// not take, and have is let go: the taken are the result's now).
	spent bool
	left  int
}

// castagnoli is the checksum of the form (CRC-32C, which the processor
// computes: SHA-256 of the 3.5 MB at 5,000 connections took 6 ms to read
// and as much to write, and a checksum only has to tell damage).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// priorMagic starts a Prior's form; priorSchema is in its salt, so that
// a change to the form or to what a key covers makes old forms unread.
const (
	priorMagic  = "swanmgr-rendered\n"
	priorSchema = "rendered-2"
)

// NewPrior reads the form WritePrior wrote with the same program (an
// identity of the running binary); anything else, torn or damaged (its
// checksum tells), is an empty Prior: then every connection is rendered.
// The checksum (CRC-32C) tells damage, not forgery: the form is a file of the state
// folder, which only its owner (root) can write. The connections'
// strings are data's bytes, not copies: data must not be changed once
// given (3.5 MB at 5,000 connections, held once instead of twice).
func NewPrior(program string, data []byte) *Prior {
	p := &Prior{salt: sha256.Sum256([]byte(program + "\x00" + priorSchema)), have: map[[32]byte]*Conn{}}
	rest, ok := bytes.CutPrefix(data, []byte(priorMagic))
	if !ok || len(rest) < sha256.Size+crc32.Size || !bytes.Equal(rest[:sha256.Size], p.salt[:]) {
		return p
	}
	body, sum := rest[sha256.Size:len(rest)-crc32.Size], rest[len(rest)-crc32.Size:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sum) {
		return p
	}
	// One string for all, data itself: the connections' strings are
	// parts of it (see the doc comment).
	rd := &priorReader{s: unsafe.String(unsafe.SliceData(body), len(body))}
	n := rd.uint()
	if n > uint64(len(body)/64) { // each is a key, a hash and more
		return p
	}
	have := make(map[[32]byte]*Conn, n)
	// The connections and their settings in two allocations.
	conns, secs := make([]Conn, n), make([]Section, n)
	for i := range conns {
		var k [32]byte
		copy(k[:], rd.bytes(32))
		rd.conn(&conns[i], &secs[i])
		if rd.bad {
			break
		}
		have[k] = &conns[i]
	}
	if rd.bad || rd.s != "" {
		return p
	}
	p.have = have
	return p
}

// Len is how many connections p holds (less those taken).
func (p *Prior) Len() int {
	if p == nil {
		return 0
	}
	if p.spent {
		return p.left
	}
	return len(p.have)
}

// spend lets go of what a Render did not take: a Prior is taken from
// once (at 5,000 connections, what it holds besides their settings is
// some 2 MB, which would otherwise stay beside the apply).
func (p *Prior) spend() {
	p.left, p.have, p.spent = len(p.have), nil, true
}

// Reused is how many connections the last Render given p took from it.
func (p *Prior) Reused() int {
	if p == nil {
		return 0
	}
	return p.used
}

// PriorBytes is the form of r's connections that NewPrior reads with
// the same program (WritePrior).
func (r *Result) PriorBytes(program string) []byte {
	var b bytes.Buffer
	r.WritePrior(&b, program)
	return b.Bytes()
}

// HasPrior says whether r has connections a Prior can hold.
func (r *Result) HasPrior() bool { return r.keyed > 0 }

// AllFrom says whether r took every connection a Prior can hold from p,
// and p held no other: a form of r would be p's again.
func (r *Result) AllFrom(p *Prior) bool {
	return p != nil && p.Len() == 0 && r.keyed == p.used
}

// WritePrior writes the form of r's connections that NewPrior reads with
// the same program: those r made or took that a later Render can take
// (see Prior). It writes nothing when there are none (HasPrior).
func (r *Result) WritePrior(w io.Writer, program string) error {
	if !r.HasPrior() {
		return nil
	}
	salt := sha256.Sum256([]byte(program + "\x00" + priorSchema))
	if _, err := io.WriteString(w, priorMagic); err != nil {
		return err
	}
	if _, err := w.Write(salt[:]); err != nil {
		return err
	}
	sum := crc32.New(castagnoli)
	b := binary.AppendUvarint(make([]byte, 0, 64<<10), uint64(r.keyed))
	for i, k := range r.keys {
		if !k.ok {
			continue
		}
		b = append(b, k.key[:]...)
		b = appendConn(b, &r.Conns[i], r.folder)
		if len(b) >= 60<<10 {
			sum.Write(b)
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	sum.Write(b)
	_, err := w.Write(sum.Sum(b))
	return err
}

// connKey is a connection's key in a Prior and whether it has one.
type connKey struct {
	key   [32]byte
	ok    bool
	taken bool // taken from the Prior (else rendered)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendInt(b []byte, v int) []byte { return binary.AppendVarint(b, int64(v)) }

// inFolder marks, in a Prior, a file of a folder policy by its name in
// the folder (a path holds no NUL): the folder is the policy's path of
// the render that takes the connection (so that a folder copied or
// renamed keeps its connections), put back by takePrior.
const inFolder = "\x00"

// folderFile is a file as a Prior keeps it: in the folder dir, its name
// there after inFolder; else as it is.
func folderFile(dir, file string) string {
	if name, ok := nameIn(dir, file); ok {
		return inFolder + name
	}
	return file
}

// nameIn is file's name in the folder dir, if it is in it.
func nameIn(dir, file string) (string, bool) {
	if dir == "" || len(file) <= len(dir) || file[len(dir)] != '/' || file[:len(dir)] != dir {
		return "", false
	}
	return file[len(dir)+1:], true
}

// appendConn appends a connection whose settings are frozen; its files
// (a folder policy's) as folderFile of dir.
func appendConn(b []byte, c *Conn, dir string) []byte {
	b = appendString(b, c.Name)
	b = appendString(b, c.Hash())
	b = appendString(b, c.Comment)
	o := &c.Origin
	for _, s := range [...]string{o.Policy, o.Rule, o.FilterList, o.Action, o.Peer, folderFile(dir, o.File)} {
		b = appendString(b, s)
	}
	b = appendInt(b, o.RuleIndex)
	b = appendInt(b, o.Line)
	b = binary.AppendUvarint(b, uint64(len(c.Children)))
	for i := range c.Children {
		ch := &c.Children[i]
		for _, s := range [...]string{ch.Name, folderFile(dir, ch.File), ch.Summary, ch.Rule, ch.FilterList} {
			b = appendString(b, s)
		}
		b = appendInt(b, ch.FilterIndex)
		b = appendInt(b, ch.Line)
		b = appendInt(b, ch.RuleIndex)
	}
	return appendString(b, c.Body.packed)
}

// priorReader reads a Prior's form; bad once anything does not read.
type priorReader struct {
	s   string
	bad bool
}

func (rd *priorReader) uint() uint64 {
	v, n := binary.Uvarint([]byte(rd.s[:min(len(rd.s), binary.MaxVarintLen64)]))
	if n <= 0 {
		rd.bad, rd.s = true, ""
		return 0
	}
	rd.s = rd.s[n:]
	return v
}

func (rd *priorReader) int() int {
	v, n := binary.Varint([]byte(rd.s[:min(len(rd.s), binary.MaxVarintLen64)]))
	if n <= 0 || v < math.MinInt32 || v > math.MaxInt32 {
		rd.bad, rd.s = true, ""
		return 0
	}
	rd.s = rd.s[n:]
	return int(v)
}

func (rd *priorReader) bytes(n int) string {
	if rd.bad || len(rd.s) < n {
		rd.bad, rd.s = true, ""
		return ""
	}
	v := rd.s[:n]
	rd.s = rd.s[n:]
	return v
}

func (rd *priorReader) string() string {
	n := rd.uint()
	if n > uint64(len(rd.s)) {
		rd.bad, rd.s = true, ""
		return ""
	}
	return rd.bytes(int(n))
}

// conn reads a connection into c, its settings into body.
func (rd *priorReader) conn(c *Conn, body *Section) {
	c.Name, c.hash, c.Comment = rd.string(), rd.string(), rd.string()
	o := &c.Origin
	for _, s := range [...]*string{&o.Policy, &o.Rule, &o.FilterList, &o.Action, &o.Peer, &o.File} {
		*s = rd.string()
	}
	o.RuleIndex, o.Line = rd.int(), rd.int()
	n := rd.uint()
	if n > uint64(len(rd.s)/8) { // each child is 8 bytes at least
		rd.bad, rd.s = true, ""
		return
	}
	if n > 0 {
		c.Children = make([]ChildOrigin, n)
	}
	for i := range c.Children {
		ch := &c.Children[i]
		for _, s := range [...]*string{&ch.Name, &ch.File, &ch.Summary, &ch.Rule, &ch.FilterList} {
			*s = rd.string()
		}
		ch.FilterIndex, ch.Line, ch.RuleIndex = rd.int(), rd.int(), rd.int()
	}
	body.packed = rd.string()
	if body.packed == "" || len(c.hash) != 32 {
		rd.bad = true
	}
	c.Body = body
}

// take is the connection p holds under key, once: its settings are
// frozen and a taken connection is not changed (its children's list is
// not added to), so it is not copied.
func (p *Prior) take(key [32]byte) (Conn, bool) {
	if p.spent {
		return Conn{}, false
	}
	c, ok := p.have[key]
	if !ok {
		return Conn{}, false
	}
	delete(p.have, key)
	p.used++
	return *c, true
}
