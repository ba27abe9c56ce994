package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
)

// Reuse keeps what the TOML decoder made of a policy folder's files (and
// of the chunks a large single file is decoded in, see decodeChunks),
// by their content, so that a folder in which one file of thousands
// changed decodes that file only (decoding is most of what reading a folder
// costs: for 5,001 files, 0.22-0.26 s decoded against 0.04-0.05 s taken
// back from what Bytes wrote). A file's text is the key (its SHA-256), so a reused result
// is what decoding that text gives; the lines, the checks before the
// decoder and the merge and validation of the folder are done again as
// for any read.
//
// Only files that decode cleanly (no unknown or miscased key) and hold no
// inline secret are kept: Bytes, which swanmgr writes to its state
// folder, never holds a secret value (the encoding refuses a set Secret). The
// results a Reuse hands out are shared with it and with every later
// parse: nothing may change them (validation and rendering only read
// what they are given).
type Reuse struct {
	salt [32]byte

	mu     sync.Mutex
	have   map[[32]byte]*kept // from Bytes of an earlier Reuse, or decoded since
	used   map[[32]byte]bool  // taken or added since the last Prune
	added  int                // decoded and kept since the last Prune
	hits   int                // taken since the last Prune
	loaded int                // entries held at the last Prune (or read at the start)
}

// kept is one file's decoded result, the lines of its table headers
// (what scanPositions finds first; nil for a chunk of a file, whose lines
// are the whole text's), and its encoding once known (read back, or made
// by Bytes): written again as it is. The headers are shared by every
// parse that takes the file and never changed.
//
// One read back is decoded when first taken (ready), by the parse that
// takes it: a folder's thousands of files are then decoded on every CPU
// as they are parsed, not one after the other before the parse begins
// (at 5,001 files, a tenth of a one-rule change's time).
type kept struct {
	once    sync.Once
	f       *File
	headers map[string]int
	enc     []byte
}

// ready decodes k's encoding if it was not yet, and says whether k holds
// a file that may be taken (its encoding read whole, reusable).
func (k *kept) ready() bool {
	k.once.Do(func() {
		if k.f != nil {
			return
		}
		rd := &reuseReader{b: k.enc}
		f := rd.file()
		headers := rd.headers()
		if rd.err == nil && len(rd.b) == 0 && f != nil && reusable(f) {
			k.f, k.headers = f, headers
		}
	})
	return k.f != nil
}

// reuseMagic begins what Bytes writes; then the salt (the program that
// decoded and File's schema, so that another build's results are not
// taken), the number of files, and per file its key, the length of what
// follows, its encoding (reuse_codec.go) and its headers' lines
// (appendHeaders). The last byte of the magic is the format's version.
const reuseMagic = "swanmgr decoded policy files\n\x03"

// NewReuse returns a Reuse holding the results data (an earlier Reuse's
// Bytes, or nothing) keeps for program, an identity of the running
// program: results another program decoded are not taken. Data that does
// not read (damaged, another version) is as none: everything is decoded;
// a file's result whose encoding does not read when it is first asked for
// is as none too (that file is decoded). The results keep data: it must
// not change.
func NewReuse(program string, data []byte) *Reuse {
	r := &Reuse{salt: sha256.Sum256([]byte(program + "\x00" + fileSchema)), have: map[[32]byte]*kept{}, used: map[[32]byte]bool{}}
	rest, ok := bytes.CutPrefix(data, []byte(reuseMagic))
	if !ok || len(rest) < len(r.salt) || !bytes.Equal(rest[:len(r.salt)], r.salt[:]) {
		return r
	}
	rd := &reuseReader{b: rest[len(r.salt):]}
	n := rd.length()
	have := make(map[[32]byte]*kept, n)
	for i := 0; i < n && rd.err == nil; i++ {
		var sum [32]byte
		if len(rd.b) < len(sum) {
			rd.fail()
			break
		}
		copy(sum[:], rd.b)
		rd.b = rd.b[len(sum):]
		size := rd.length()
		if rd.err != nil {
			break
		}
		have[sum] = &kept{enc: rd.b[:size:size]}
		rd.b = rd.b[size:]
	}
	if rd.err != nil || len(rd.b) != 0 {
		return r
	}
	r.have, r.loaded = have, len(have)
	return r
}

// Changed reports whether Bytes would write something other than it read:
// a file was decoded and kept, or one it held was not asked for.
func (r *Reuse) Changed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.added > 0 || len(r.used) != r.loaded
}

// Counts says how many files were taken from r and how many decoded and
// kept since it was made (or since the last Prune).
func (r *Reuse) Counts() (taken, decoded int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits, r.added
}

// Bytes encodes the results taken or decoded since r was made (or since
// the last Prune): those of files no longer read are left out.
func (r *Reuse) Bytes() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sums := make([][32]byte, 0, len(r.used))
	for sum := range r.used {
		sums = append(sums, sum)
	}
	slices.SortFunc(sums, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	// At the size of what it holds, the files decoded now (whose form
	// is not known yet) taken at 1 KB, what a folder's file of one peer
	// takes: grown from nothing it was allocated some four times over.
	size := len(reuseMagic) + len(r.salt) + binary.MaxVarintLen64
	for _, sum := range sums {
		size += len(sum) + binary.MaxVarintLen32
		if enc := r.have[sum].enc; enc != nil {
			size += len(enc)
		} else {
			size += 1 << 10
		}
	}
	b := append(make([]byte, 0, size), reuseMagic...)
	b = append(b, r.salt[:]...)
	b = binary.AppendUvarint(b, uint64(len(sums)))
	for _, sum := range sums {
		b = append(b, sum[:]...)
		k := r.have[sum]
		if k.enc == nil {
			enc, err := encodeFile(nil, k.f)
			if err != nil {
				return nil, err
			}
			k.enc = appendHeaders(enc, k.headers)
		}
		b = binary.AppendUvarint(b, uint64(len(k.enc)))
		b = append(b, k.enc...)
	}
	return b, nil
}

// Prune forgets the results not taken or decoded since r was made (or
// since the last Prune), and starts counting again: a Reuse kept in
// memory from one read of a folder to the next holds its files' results
// only.
func (r *Reuse) Prune() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sum := range r.have {
		if !r.used[sum] {
			delete(r.have, sum)
		}
	}
	r.loaded, r.added, r.hits = len(r.have), 0, 0
	r.used = map[[32]byte]bool{}
}

// sum is the key of a file's text.
func (r *Reuse) sum(data []byte) [32]byte {
	h := sha256.New()
	h.Write(r.salt[:])
	h.Write(data)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

func (r *Reuse) take(sum [32]byte) *kept {
	r.mu.Lock()
	k := r.have[sum]
	r.mu.Unlock()
	if k == nil {
		return nil
	}
	ok := k.ready()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		// Damaged: forgotten, so that the file decoded now is kept in
		// its place and Bytes writes it.
		if r.have[sum] == k {
			delete(r.have, sum)
		}
		return nil
	}
	r.used[sum] = true
	r.hits++
	return k
}

func (r *Reuse) keep(sum [32]byte, f *File, headers map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.have[sum]; !ok {
		r.added++
	}
	r.have[sum] = &kept{f: f, headers: headers}
	r.used[sum] = true
}

// parseMember parses one file of a folder, taking its decoded result from
// r when r has the same text's. The positions of a file taken keep data
// itself (a piece of the folder's bytes, which nothing changes), not a
// copy: at 5,001 files, 2 MB less held beside the folder's bytes.
func parseMember(path string, data []byte, r *Reuse) (*File, Problems) {
	if r == nil {
		return parse(path, data)
	}
	// A text r has passed this program's limits when it was decoded (the
	// key holds the program); one it has not is checked by parse.
	sum := r.sum(data)
	if k := r.take(sum); k != nil && k.headers != nil {
		// The same text's headers are where they were: the scan is
		// not done again (at 5,001 files, a tenth of reading the folder).
		f := *k.f
		f.Path = path
		f.pos = &positions{src: data, headers: k.headers}
		return &f, nil
	}
	f, ps := parse(path, data)
	if f != nil && len(ps) == 0 && reusable(f) && f.pos != nil {
		k := *f
		k.Path, k.pos, k.dir, k.src = "", nil, "", nil
		r.keep(sum, &k, f.pos.headers)
	}
	return f, ps
}

// reusable says whether a decoded file may be kept: no inline secret (it
// would be written to disk), and in the keys the decoder fills with any
// TOML value only the strings and integers Bytes keeps as they are.
func reusable(f *File) bool {
	for _, fl := range f.FilterLists {
		for _, x := range fl.Filters {
			for _, v := range []any{x.Protocol, x.SourcePort, x.DestinationPort} {
				switch v.(type) {
				case nil, string, int64:
				default:
					return false
				}
			}
		}
	}
	for _, p := range f.Policies {
		for _, rule := range p.Rules {
			for _, a := range rule.Authentication {
				if !a.Secret.IsZero() {
					return false
				}
			}
		}
	}
	return true
}

// errSecretNotKept refuses to encode a Secret that is set.
var errSecretNotKept = errors.New("a secret is never encoded")
