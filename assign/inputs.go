package assign

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"unsafe"
	"weak"

	"github.com/swanmgr/swanmgr/internal/kept"
	"github.com/swanmgr/swanmgr/model"
)

// Inputs is what an assignment was made from, besides the rendered
// policy: the policy file and the files and variables it read. Apply
// records their fingerprints; UpToDate compares them.
type Inputs struct {
	PolicyFile string        // as given to apply
	Policy     []byte        // its contents
	Read       []model.Input // keys, certificates, variables
	Warnings   []string      // validation warnings, shown again when nothing is re-read
	Insecure   bool          // --insecure-secrets was given
	// Restorable: the policy file (with the key files it names) is all it
	// takes to assign this policy again — no inline preshared keys. Then
	// apply keeps a copy of it for `--confirm` to go back to.
	Restorable bool
}

var (
	programOnce sync.Once
	programID   string
)

// programFingerprint identifies the running swanmgr binary: a different
// program may render differently, so it invalidates the shortcut and what
// is kept of earlier reads and renders. The running file's device, inode,
// size, modification and change times identify it without reading it (a
// rebuilt or replaced binary changes them; cp -p keeps a modification
// time, never a change time). "" when they cannot be read: then nothing
// kept is taken.
func programFingerprint() string {
	programOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			return
		}
		programID = programIdentity(selfExe, exe)
	})
	return programID
}

// selfExe is the running program's file, even once another file took its
// name (a package upgrade renames the new binary over the old one while
// an apply may still run, or wait for the lock): os.Executable names the
// path, whose file may be the new one by then.
const selfExe = "/proc/self/exe"

// programIdentity is programFingerprint of the file self (name: its path,
// as os.Executable gives it; self is stat'ed when it can be).
func programIdentity(self, name string) string {
	st, err := os.Stat(self)
	if err != nil {
		if st, err = os.Stat(name); err != nil {
			return ""
		}
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%d\x00%d\x00%d.%d", name, sys.Dev, sys.Ino, st.Size(), st.ModTime().UnixNano(), sys.Ctim.Sec, sys.Ctim.Nsec)
	return hex.EncodeToString(h.Sum(nil))
}

// keyedFingerprint is the HMAC of an input under key. The policy's, of
// megabytes when it is a folder of thousands of files, is asked for
// twice or three times by one apply (whether it changed, the record):
// the last few made are kept (internal/kept) for the same key, name and data (weak
// pointers: data collected and other data made where it was is not the
// same; data is never changed once read).
func keyedFingerprint(key []byte, kind, name string, data []byte) string {
	if len(data) < fingerprintKeptFrom {
		return makeFingerprint(key, kind, name, data)
	}
	of := fingerprintOf{key: string(key), kind: kind, name: name, data: weak.Make(unsafe.SliceData(data)), n: len(data)}
	if fp, ok := keptFingerprints.Get(of); ok {
		return fp
	}
	fp := makeFingerprint(key, kind, name, data)
	keptFingerprints.Put(of, fp)
	return fp
}

// fingerprintKeptFrom is the size of data from which its fingerprint is
// kept.
const fingerprintKeptFrom = 64 << 10

type fingerprintOf struct {
	key, kind, name string
	data            weak.Pointer[byte]
	n               int
}

var keptFingerprints kept.Ring[fingerprintOf, string]

func makeFingerprint(key []byte, kind, name string, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// recordInputs fingerprints the inputs of an assignment. The order is
// stable and each file or variable appears once.
func recordInputs(key []byte, in Inputs, backend string) []RecordInput {
	abs, _ := filepath.Abs(in.PolicyFile)
	out := []RecordInput{
		{Kind: "program", Name: "swanmgr", Fingerprint: programFingerprint()},
		{Kind: "backend", Name: backend, Fingerprint: keyedFingerprint(key, "backend", backend, nil)},
		{Kind: "policy", Name: abs, Fingerprint: keyedFingerprint(key, "policy", abs, in.Policy)},
	}
	seen := map[string]bool{}
	var read []RecordInput
	for _, i := range in.Read {
		if seen[i.Kind+"\x00"+i.Name] {
			continue
		}
		seen[i.Kind+"\x00"+i.Name] = true
		read = append(read, RecordInput{Kind: i.Kind, Name: i.Name, Fingerprint: keyedFingerprint(key, i.Kind, i.Name, []byte(i.Data.Reveal()))})
	}
	sort.Slice(read, func(a, b int) bool { return read[a].Kind+read[a].Name < read[b].Kind+read[b].Name })
	return append(out, read...)
}

// policyChangedHint says, from the end of the record's file only, that
// the policy in is not the one recorded: the record's inputs, written
// near its end, do not hold its fingerprint (or there is no record). A
// hint for starting work early, never what decides: false when unsure.
func (s Store) policyChangedHint(socket string, in Inputs) bool {
	key := s.existingFingerprintKey()
	if key == nil {
		return true // nothing was applied here with a record
	}
	f, err := openState(s.path(socket, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	const tail = 64 << 10
	buf := make([]byte, min(fi.Size(), tail))
	if _, err := f.ReadAt(buf, fi.Size()-int64(len(buf))); err != nil {
		return false
	}
	abs, _ := filepath.Abs(in.PolicyFile)
	want := `"fingerprint":"` + keyedFingerprint(key, "policy", abs, in.Policy) + `"`
	return bytes.Contains(buf, []byte(`{"kind":"policy",`)) && !bytes.Contains(buf, []byte(want))
}

// madeByThisProgram says whether this swanmgr program wrote the record:
// what it derived from connection settings (their views) is then what
// this one derives.
func (r *Record) madeByThisProgram() bool {
	if r == nil {
		return false
	}
	fp := programFingerprint()
	for _, ri := range r.Inputs {
		if ri.Kind == "program" {
			return fp != "" && ri.Fingerprint == fp
		}
	}
	return false
}

// inputsUnchanged reads the recorded inputs again and reports whether all
// are as they were. A key file that became readable by others counts as a
// change, so that validation runs and refuses it.
func inputsUnchanged(key []byte, rec *Record, in Inputs, backend string) bool {
	if rec == nil || len(rec.Inputs) < 3 || programFingerprint() == "" {
		return false
	}
	abs, _ := filepath.Abs(in.PolicyFile)
	for _, ri := range rec.Inputs {
		var want string
		switch ri.Kind {
		case "program":
			want = programFingerprint()
		case "backend":
			want = keyedFingerprint(key, "backend", backend, nil)
		case "policy":
			if ri.Name != abs {
				return false
			}
			want = keyedFingerprint(key, "policy", abs, in.Policy)
		case "file":
			st, err := os.Stat(ri.Name)
			if err != nil || !st.Mode().IsRegular() || (st.Mode().Perm()&0o077 != 0 && !in.Insecure) {
				return false
			}
			// Another owner, or a folder others can write to, is for
			// validation to judge (it refuses them): no shortcut.
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() && sys.Uid != 0 && !in.Insecure {
				return false
			}
			if dir, err := os.Stat(filepath.Dir(ri.Name)); err != nil || (dir.Mode().Perm()&0o002 != 0 && dir.Mode()&os.ModeSticky == 0) {
				return false
			}
			b, err := os.ReadFile(ri.Name)
			if err != nil {
				return false
			}
			want = keyedFingerprint(key, "file", ri.Name, b)
		case "env":
			v, ok := os.LookupEnv(ri.Name)
			if !ok {
				return false
			}
			want = keyedFingerprint(key, "env", ri.Name, []byte(v))
		default:
			return false
		}
		if !hmac.Equal([]byte(want), []byte(ri.Fingerprint)) {
			return false
		}
	}
	return true
}

// upToDate reports whether charon already has the assignment that in
// would make: the policy file, everything it read and the program are
// unchanged since the last apply (rec), and charon still has every
// connection and secret of it (asked with get-conns and get-shared), and,
// up to CompareAllUpTo connections or with Refresh, has them as swanmgr
// loaded them (list-conns).
func (e *Engine) upToDate(ctx context.Context, rec *Record, in Inputs, backend string) (bool, error) {
	key := e.Store.existingFingerprintKey()
	// Certificates expire and private keys are not listed by get-shared:
	// policies with them are always validated and applied in full.
	// Leftovers (what would not unload last time) are for a full apply
	// to try again.
	if key == nil || rec == nil || !rec.Pending.empty() || len(rec.Leftovers) > 0 || rec.UsesCertificates || len(rec.Keys) > 0 || !inputsUnchanged(key, rec, in, backend) {
		return false, nil
	}
	live, err := e.Daemon.Conns(ctx)
	if err != nil {
		return false, err
	}
	liveSet := set(live)
	for _, c := range rec.Conns {
		// No hash: loaded, but not in force (a trap charon did not
		// install): load it again.
		if !liveSet[c.Name] || c.Hash == "" {
			return false, nil
		}
	}
	shared, err := e.Daemon.SharedIDs(ctx)
	if err != nil {
		return false, err
	}
	sharedSet := set(shared)
	for _, s := range rec.Secrets {
		if !sharedSet[s.Name] {
			return false, nil
		}
	}
	if e.compareAll(rec) {
		// charon's copies too, as a plan compares them: a connection
		// replaced under swanmgr (swanctl --load-conns of one of its
		// names) is loaded again. Above CompareAllUpTo, by name only.
		views, err := liveViews(ctx, e.Daemon, rec, true)
		if err != nil {
			return false, err
		}
		for _, c := range rec.Conns {
			if c.replacedIn(views) {
				return false, nil
			}
		}
	}
	// The guard's table, checked by its fingerprint: flushed or edited by
	// someone else, it is put back.
	return e.guardUpToDate(ctx, rec)
}
