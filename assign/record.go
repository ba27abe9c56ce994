package assign

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/swanmgr/swanmgr/render"
)

// DefaultStateDir holds swanmgr's records, one per charon socket.
const DefaultStateDir = "/var/lib/swanmgr"

// RecordVersion is the format of the record file.
const RecordVersion = 2

// Record is swanmgr's memory of what it loaded into one charon: the
// connections with hashes of their exact settings (to know what changed)
// and where they came from in the policy, the ids of its secrets and keys,
// and fingerprints of the inputs (to know cheaply that nothing changed).
// The connections' settings themselves (to restore them if an apply
// fails) are kept beside it, in a file read only when needed. It never
// holds secret values.
type Record struct {
	Version   int            `json:"version"`
	Socket    string         `json:"socket"`
	Source    string         `json:"source"`
	Policy    string         `json:"policy"`
	Backend   string         `json:"backend"`
	AppliedAt time.Time      `json:"applied_at"`
	Conns     []RecordConn   `json:"conns"`
	Secrets   []RecordSecret `json:"secrets"`
	// Keys are the ids of the private keys swanmgr loaded. Load adds
	// those of the pending note (Pending.Keys): a key charon did not have
	// until an unfinished apply loaded it is swanmgr's too, taken over by
	// the next apply that wants it, unloaded by one that does not and by
	// unassign.
	Keys []string `json:"keys,omitempty"`
	// Inputs fingerprints the policy file, the files and variables it
	// read, and the swanmgr program that rendered it.
	Inputs   []RecordInput `json:"inputs,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	// UsesCertificates: the policy loads certificates, whose validity
	// depends on the date, so apply always validates it again.
	UsesCertificates bool `json:"uses_certificates,omitempty"`
	// GuardHash identifies the nftables guard swanmgr installed (its
	// ruleset is kept beside the record); "" for none.
	GuardHash string `json:"guard_hash,omitempty"`
	// Leftovers name the connections, secrets and private keys the policy
	// no longer has that would not unload (or, for a connection, whose SAs
	// would not tear down): the record keeps them so that the next apply
	// or unassign tries again, and while there are any the shortcut of an
	// unchanged policy is not taken.
	Leftovers []string `json:"leftovers,omitempty"`

	// Pending is what an apply was about to load when it stopped without
	// finishing (killed, say): swanmgr owns those names too, so the next
	// apply or unassign takes care of them. Kept in its own small file.
	Pending Pending `json:"-"`

	connIdx, secretIdx map[string]int // built on first lookup
}

// Pending lists names an unfinished apply may have loaded.
type Pending struct {
	Conns   []string `json:"conns,omitempty"`
	Secrets []string `json:"secrets,omitempty"`
	// Views are the views (viewOfBody) of the connections sent: a pending
	// name whose connection in charon looks different is not swanmgr's.
	Views map[string]string `json:"views,omitempty"`
	// EarlierViews are the views earlier unfinished applies sent under a
	// pending name that a later one sent with other settings: charon may
	// hold any of them (the later load may never have happened).
	EarlierViews map[string][]string `json:"earlier_views,omitempty"`
	// Keys are the ids of private keys the apply loaded that charon did
	// not have before, noted right after each load-key (a note written
	// before this field has none).
	Keys []string `json:"keys,omitempty"`
}

func (p Pending) hasKey(id string) bool { return contains(p.Keys, id) }

func (p Pending) empty() bool { return len(p.Conns) == 0 && len(p.Secrets) == 0 && len(p.Keys) == 0 }

// appendNew appends to xs those of ys it does not hold yet, in order.
func appendNew(xs []string, ys ...string) []string {
	have := set(xs)
	for _, y := range ys {
		if !have[y] {
			have[y] = true
			xs = append(xs, y)
		}
	}
	return xs
}

func (r *Record) pendingConn(name string) bool { return r != nil && contains(r.Pending.Conns, name) }
func (r *Record) pendingSecret(name string) bool {
	return r != nil && contains(r.Pending.Secrets, name)
}

// RecordInput is one input of the last assignment, fingerprinted like
// secrets (an HMAC under this machine's key).
type RecordInput struct {
	Kind        string `json:"kind"` // "policy", "file", "env", "program"
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
}

// RecordConn is one connection swanmgr loaded.
type RecordConn struct {
	Name        string               `json:"name"`
	Hash        string               `json:"hash"`
	IKEHash     string               `json:"ike_hash"`
	ChildHashes map[string]string    `json:"child_hashes"`
	Origin      render.Origin        `json:"origin"`
	Children    []render.ChildOrigin `json:"children"`
	// View is what list-conns shows of it (viewOfBody): charon's copy
	// that looks different has drifted.
	View string `json:"view,omitempty"`
	// Body is the connection's settings; filled by Store.LoadBodies.
	Body *render.Section `json:"-"`
}

// RecordSecret is one shared secret swanmgr loaded: its id and owners,
// never its value. Fingerprint is an HMAC-SHA256 of the secret under a
// random key of this machine (FingerprintKeyFile): it tells whether the
// secret changed, so an unchanged one is not sent again, and it cannot be
// turned back into the secret other than by guessing it.
type RecordSecret struct {
	Name        string   `json:"name"`
	Owners      []string `json:"owners"`
	Conns       []string `json:"conns"`
	Fingerprint string   `json:"fingerprint,omitempty"`
}

// FingerprintKeyFile holds the random key of secret fingerprints, in the
// state folder (mode 0600).
const FingerprintKeyFile = "fingerprint.key"

// existingFingerprintKey returns the fingerprint key if there is one.
func (s Store) existingFingerprintKey() []byte {
	if b, err := readState(filepath.Join(s.Dir, FingerprintKeyFile)); err == nil && len(b) == 32 {
		return b
	}
	return nil
}

// fingerprintKey returns this machine's fingerprint key, creating it.
func (s Store) fingerprintKey() ([]byte, error) {
	p := filepath.Join(s.Dir, FingerprintKeyFile)
	if b := s.existingFingerprintKey(); b != nil {
		return b, nil
	}
	if err := s.ensureDir(); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	// Several swanmgr may share the state folder (one per charon) and
	// start at once: the key is written under a name of its own, then
	// linked in place only if no key is there yet, so that every one of
	// them uses the first key made. (A fixed temporary name, renamed in
	// place, failed one of two first applies at once, and a rename would
	// replace a key another had already used.)
	f, err := os.CreateTemp(s.Dir, FingerprintKeyFile+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(key); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if b := s.existingFingerprintKey(); b != nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	return key, nil
}

// fingerprint identifies a secret's type, owners and value under key.
func fingerprint(key []byte, s render.Secret) string {
	return newFingerprinter(key).of(s)
}

// fingerprinter computes fingerprints with one key, one after the other:
// the HMAC's key is set up once and each secret written at once (at
// thousands of secrets, a new HMAC and a write per part for each took
// more than the hashing).
type fingerprinter struct {
	m   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

func newFingerprinter(key []byte) *fingerprinter {
	return &fingerprinter{m: hmac.New(sha256.New, key)}
}

// of is fingerprint(key, s); the bytes hashed are the same.
func (f *fingerprinter) of(s render.Secret) string {
	f.m.Reset()
	b := append(f.buf[:0], s.Type...)
	for _, o := range s.Owners {
		b = append(b, 0)
		b = append(b, o...)
	}
	b = append(b, 0, 0)
	b = append(b, s.Data.Reveal()...)
	f.m.Write(b)
	clear(b) // the secret's value does not stay in the buffer
	f.buf = b[:0]
	return hex.EncodeToString(f.m.Sum(f.sum[:0]))
}

func (r *Record) secret(name string) *RecordSecret {
	if r == nil {
		return nil
	}
	r.index()
	if i, ok := r.secretIdx[name]; ok {
		return &r.Secrets[i]
	}
	return nil
}

// Conn returns the recorded connection named name, or nil.
func (r *Record) Conn(name string) *RecordConn {
	if r == nil {
		return nil
	}
	r.index()
	if i, ok := r.connIdx[name]; ok {
		return &r.Conns[i]
	}
	return nil
}

// index maps names to positions, for lookups in records of thousands.
func (r *Record) index() {
	if r.connIdx != nil {
		return
	}
	r.connIdx = make(map[string]int, len(r.Conns))
	for i := range r.Conns {
		r.connIdx[r.Conns[i].Name] = i
	}
	r.secretIdx = make(map[string]int, len(r.Secrets))
	for i := range r.Secrets {
		r.secretIdx[r.Secrets[i].Name] = i
	}
}

func (r *Record) hasSecret(name string) bool { return r.secret(name) != nil }

func (r *Record) hasKey(id string) bool { return r != nil && contains(r.Keys, id) }

// Store keeps records and locks in a folder.
type Store struct {
	Dir string
}

// path returns the record file for a socket: a readable part of its path
// and a hash of all of it, so that different sockets never share a file.
func (s Store) path(socket, ext string) string {
	name := strings.Trim(strings.NewReplacer("/", "_", ":", "_").Replace(socket), "_")
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	if name == "" {
		name = "default"
	}
	sum := sha256.Sum256([]byte(socket))
	return filepath.Join(s.Dir, name+"-"+hex.EncodeToString(sum[:6])+ext)
}

// Load reads the record for a socket; nil without error when there is none.
func (s Store) Load(socket string) (*Record, error) {
	if err := s.checkDir(); err != nil {
		return nil, err
	}
	pending, err := s.loadPending(socket)
	if err != nil {
		return nil, err
	}
	p := s.path(socket, ".json")
	b, err := readState(p)
	if errors.Is(err, os.ErrNotExist) {
		if !pending.empty() {
			return &Record{Version: RecordVersion, Socket: socket, Keys: pending.Keys, Pending: pending}, nil
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading swanmgr's record: %w", err)
	}
	var r Record
	if err := decodeRecord(b, &r); err != nil {
		return nil, fmt.Errorf("reading swanmgr's record %s: %w (move it away to start afresh; swanmgr then owns nothing)", p, err)
	}
	if r.Version != RecordVersion {
		return nil, fmt.Errorf("swanmgr's record %s has format %d, this swanmgr knows %d", p, r.Version, RecordVersion)
	}
	r.Pending = pending
	r.Keys = appendNew(r.Keys, pending.Keys...)
	return &r, nil
}

func (s Store) loadPending(socket string) (Pending, error) {
	var p Pending
	b, err := readState(s.path(socket, ".pending.json"))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("reading swanmgr's record: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("reading swanmgr's record of an unfinished apply: %w", err)
	}
	// Notes written before they were kept free of repeats list some
	// names twice.
	p.Conns, p.Secrets, p.Keys = appendNew(nil, p.Conns...), appendNew(nil, p.Secrets...), appendNew(nil, p.Keys...)
	return p, nil
}

// savePending notes, before loading, what an apply is about to load.
func (s Store) savePending(socket string, p Pending) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	return s.writeJSON(s.path(socket, ".pending.json"), p)
}

// clearPending removes the note of an unfinished apply.
func (s Store) clearPending(socket string) error {
	err := os.Remove(s.path(socket, ".pending.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing swanmgr's record: %w", err)
	}
	return nil
}

// recordFiles are the files that record r (mode 0600): the files of the
// connections' settings that shards names (see bodyFiles; the Body of
// every connection in them must be set), before the record that names
// them, in the order they go in place.
func (s Store) recordFiles(r *Record, shards shardSet) []jsonFile {
	r.Version = RecordVersion
	return append(s.bodyFiles(r, shards), jsonFile{s.path(r.Socket, ".json"), r})
}

// jsonFile is one state file to write: its path and what it holds.
type jsonFile struct {
	path string
	v    any
}

func (s Store) writeJSON(p string, v any) error {
	return s.writeJSONs([]jsonFile{{p, v}})
}

// writeJSONs writes files atomically, each encoded and synced under a
// temporary name at the same time as the others (the encoding of a large
// record and of its settings takes tens of milliseconds each), then moved
// in place one after the other in the order given: a crash leaves the
// same states a write of one file after the other could. When any of them
// cannot be written, none is moved in place.
func (s Store) writeJSONs(files []jsonFile) error {
	st, err := s.stageJSONs(files)
	if err != nil {
		return err
	}
	return st.commit()
}

// stagedFiles are state files written under temporary names, not yet in
// place.
type stagedFiles struct {
	tmps, paths []string
}

// stageJSONs encodes and syncs files under temporary names, concurrently.
func (s Store) stageJSONs(files []jsonFile) (*stagedFiles, error) {
	st := &stagedFiles{tmps: make([]string, len(files)), paths: make([]string, len(files))}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		st.paths[i] = f.path
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.tmps[i], errs[i] = s.stageJSON(f.v)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		st.discard()
		return nil, err
	}
	return st, nil
}

// commit moves the staged files in place, in order; after a failure the
// rest are discarded.
func (st *stagedFiles) commit() error {
	for i, tmp := range st.tmps {
		if err := os.Rename(tmp, st.paths[i]); err != nil {
			st.tmps = st.tmps[i:]
			st.discard()
			return fmt.Errorf("saving swanmgr's record: %w", err)
		}
	}
	st.tmps = nil
	return nil
}

// discard removes the staged files that are not in place.
func (st *stagedFiles) discard() {
	if st == nil {
		return
	}
	for _, tmp := range st.tmps {
		if tmp != "" {
			os.Remove(tmp)
		}
	}
	st.tmps = nil
}

// stageJSON writes v to a new temporary file in the state folder, synced,
// and returns its name.
func (s Store) stageJSON(v any) (string, error) {
	tmp, err := os.CreateTemp(s.Dir, ".record-*")
	if err != nil {
		return "", fmt.Errorf("saving swanmgr's record: %w", err)
	}
	fail := func(err error) (string, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("saving swanmgr's record: %w", err)
	}
	w := bufio.NewWriterSize(tmp, 1<<16)
	if sw, ok := v.(stateWriter); ok {
		err = sw.writeState(w)
	} else {
		err = json.NewEncoder(w).Encode(v)
	}
	if err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("saving swanmgr's record: %w", err)
	}
	return tmp.Name(), nil
}

// Remove deletes the record for a socket.
func (s Store) Remove(socket string) error {
	// The lock goes too: Lock checks that the file it locked is still
	// the one at the path, so removing it under the lock is safe.
	exts := []string{".json", legacyBodies, ".pending.json", ".guard.json", ".policy.json", ".decoded", ".rendered", ".lock"}
	for k := range bodyShards {
		exts = append(exts, shardExt(k))
	}
	for _, ext := range exts {
		err := os.Remove(s.path(socket, ext))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing swanmgr's record: %w", err)
		}
	}
	return nil
}

// Lock takes the exclusive lock for a socket, waiting until it is free or
// ctx ends. Call the returned function to release it.
func (s Store) Lock(ctx context.Context, socket string) (func(), error) {
	if err := s.ensureDir(); err != nil {
		return nil, err
	}
	p := s.path(socket, ".lock")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, syscall.ELOOP) {
			return nil, &UnsafeStateError{Path: p, Why: "is a symbolic link", Fix: "remove it"}
		}
		if err != nil {
			return nil, fmt.Errorf("locking: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Unassign removes the lock file under the lock: if it did
			// while this one waited, the lock held is on a file nobody
			// else will open. Take the one at the path instead.
			if same, serr := sameFile(f, p); serr != nil || !same {
				f.Close()
				continue
			}
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another swanmgr working on %s (lock %s): %w", socket, p, ctx.Err())
		case <-tick.C:
		}
	}
}

// sameFile reports whether the open file f is the file at path.
func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
