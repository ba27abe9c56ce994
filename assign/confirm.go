package assign

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Confirm-or-revert: `apply --confirm D` records a Confirmation before it
// changes anything; unless `swanmgr confirm` removes it before Deadline,
// whoever watches (a detached watchdog, or the agent) assigns the
// previous policy again with the normal minimal-change apply. The record
// holds no secret: the previous policy is kept as the policy file it was
// (a Snapshot, kept by every apply of a policy without inline secrets),
// and its key files are read again when it is restored.

// Snapshot is the policy file an assignment was made from, as it was.
type Snapshot struct {
	Path     string    `json:"path"` // where it was read from (relative paths in it resolve there)
	Data     []byte    `json:"data"`
	Insecure bool      `json:"insecure,omitempty"` // --insecure-secrets was given
	Backend  string    `json:"backend"`
	At       time.Time `json:"at"`
}

// Confirmation is a change waiting for `swanmgr confirm`.
type Confirmation struct {
	ID       string    `json:"id"`
	Command  string    `json:"command"` // "apply" or "unassign"
	Started  time.Time `json:"started"`
	Deadline time.Time `json:"deadline"`
	Timeout  string    `json:"timeout"` // as given: "2m"
	// Previous is the assignment to go back to; nil when there was none
	// (the revert unassigns).
	Previous *Snapshot `json:"previous"`
	// Policy is the policy being tried (empty for unassign), PolicyHash
	// the SHA-256 of its file as applied: the agent does not apply that
	// file again once the change was reverted.
	Policy     string `json:"policy,omitempty"`
	PolicyHash string `json:"policy_hash,omitempty"`
	// Watchdog is the pid of the detached process that reverts, 0 when
	// the agent watches.
	Watchdog int `json:"watchdog,omitempty"`
}

// Reverted says a change was reverted, for status.
type Reverted struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"` // "not confirmed within 2m", "swanmgr revert"
	Policy string    `json:"policy,omitempty"`
	Error  string    `json:"error,omitempty"` // the revert failed: why
	// RejectedHash is the SHA-256 of the policy file that was reverted.
	RejectedHash string `json:"rejected_hash,omitempty"`
}

// NewConfirmationID returns a random id.
func NewConfirmationID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RemoveSnapshot forgets the snapshot (a policy with inline secrets has
// none: it cannot be restored without writing them to disk).
func (s Store) RemoveSnapshot(socket string) error {
	err := os.Remove(s.path(socket, ".policy.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// LoadSnapshot returns the snapshot of the current assignment, nil if
// there is none.
func (s Store) LoadSnapshot(socket string) (*Snapshot, error) {
	var snap Snapshot
	ok, err := s.readJSONFile(socket, ".policy.json", &snap)
	if err != nil || !ok {
		return nil, err
	}
	return &snap, nil
}

// SnapshotFile is the snapshot's file as it stands (os.SameFile and its
// size and modification time tell whether a snapshot read before is
// still the one); nil, nil when there is none.
func (s Store) SnapshotFile(socket string) (os.FileInfo, error) {
	fi, err := os.Stat(s.path(socket, ".policy.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return fi, err
}

// SnapshotHash identifies a snapshot: the policy file's path and
// content, and --insecure-secrets ("" for none).
func SnapshotHash(snap *Snapshot) string {
	if snap == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00", snap.Path, snap.Insecure)
	h.Write(snap.Data)
	return hex.EncodeToString(h.Sum(nil))
}

// SameSnapshot says whether two snapshots (neither nil) are of the same
// policy file, text and --insecure-secrets.
func SameSnapshot(a, b *Snapshot) bool {
	return a != nil && b != nil && a.Path == b.Path && a.Insecure == b.Insecure && bytes.Equal(a.Data, b.Data)
}

// Replaced is a snapshot the agent's apply replaced, with what replaced
// it: the point to revert to of an `apply --confirm` of the file the agent
// had assigned just before (the operator edits the agent's file, the agent
// assigns the edit within a second or so, then the apply --confirm meant
// to try it finds nothing to change).
type Replaced struct {
	Snapshot *Snapshot `json:"snapshot"`
	// By is the SnapshotHash of the snapshot that replaced it: once
	// another apply replaced that one too, this one is not what came
	// before the current assignment any more.
	By    string    `json:"by"`
	Agent bool      `json:"agent,omitempty"` // the agent made the apply
	At    time.Time `json:"at"`
}

// SnapshotMark is the snapshot file as it was before an apply, held open
// (not read): if the apply replaces it, its content is still there to be
// kept (KeepReplaced). Close it after.
type SnapshotMark struct{ f *os.File }

// MarkSnapshot opens the current snapshot; a nil mark (no error) when
// there is none.
func (s Store) MarkSnapshot(socket string) (*SnapshotMark, error) {
	if err := s.checkDir(); err != nil {
		return nil, err
	}
	f, err := openState(s.path(socket, ".policy.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &SnapshotMark{f}, nil
}

// Close releases the mark.
func (m *SnapshotMark) Close() {
	if m != nil {
		m.f.Close()
	}
}

// KeepReplaced, after an apply (under its lock), keeps the snapshot m
// marked as the one replaced if the apply replaced it, and says whether
// it did.
func (s Store) KeepReplaced(socket string, m *SnapshotMark, agent bool) (bool, error) {
	if m == nil {
		return false, nil
	}
	before, err := m.f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Lstat(s.path(socket, ".policy.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err == nil && os.SameFile(before, now) {
		return false, nil
	}
	cur, err := s.LoadSnapshot(socket)
	if err != nil || cur == nil {
		// No snapshot now (an unassign, a policy with inline keys): no
		// --confirm can come after it, nothing to keep.
		return false, err
	}
	var old Snapshot
	if _, err := m.f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	if err := json.NewDecoder(m.f).Decode(&old); err != nil {
		return false, fmt.Errorf("reading the replaced policy snapshot: %w", err)
	}
	if SameSnapshot(&old, cur) {
		return false, nil
	}
	if err := s.writeJSON(s.path(socket, ".replaced.json"), &Replaced{Snapshot: &old, By: SnapshotHash(cur), Agent: agent, At: time.Now().UTC()}); err != nil {
		return false, err
	}
	return true, s.syncDir()
}

// LoadReplaced returns the snapshot last kept by KeepReplaced, nil if none.
func (s Store) LoadReplaced(socket string) (*Replaced, error) {
	var r Replaced
	ok, err := s.readJSONFile(socket, ".replaced.json", &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// RemoveReplaced forgets it (a confirmation took it as its point to
// revert to).
func (s Store) RemoveReplaced(socket string) error {
	return s.removeSynced(s.path(socket, ".replaced.json"))
}

// ConfirmLogPath is where the watchdog of a socket logs.
func (s Store) ConfirmLogPath(socket string) string { return s.path(socket, ".confirm.log") }

// SaveConfirmation records a pending confirmation.
func (s Store) SaveConfirmation(socket string, c *Confirmation) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := s.writeJSON(s.path(socket, ".confirm.json"), c); err != nil {
		return err
	}
	return s.syncDir()
}

// LoadConfirmation returns the pending confirmation, nil if none.
func (s Store) LoadConfirmation(socket string) (*Confirmation, error) {
	var c Confirmation
	ok, err := s.readJSONFile(socket, ".confirm.json", &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

// RemoveConfirmation ends a pending confirmation (confirmed or reverted).
func (s Store) RemoveConfirmation(socket string) error {
	// Until the folder is synced, a power loss can bring the file back:
	// the agent would then revert a change that was confirmed.
	if err := s.removeSynced(s.path(socket, ".confirm.json")); err != nil {
		return fmt.Errorf("removing the pending confirmation: %w", err)
	}
	return nil
}

// SaveReverted notes a revert for status (nil removes the note).
func (s Store) SaveReverted(socket string, r *Reverted) error {
	if r == nil {
		return s.removeSynced(s.path(socket, ".reverted.json"))
	}
	if err := s.ensureDir(); err != nil {
		return err
	}
	// Synced before the revert removes the confirmation: on disk, the
	// note never goes missing while the confirmation is gone.
	if err := s.writeJSON(s.path(socket, ".reverted.json"), r); err != nil {
		return err
	}
	return s.syncDir()
}

// removeSynced removes a state file, if it is there, durably (syncDir).
func (s Store) removeSynced(p string) error {
	err := os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.syncDir()
}

// syncDir makes the state folder's entries durable: a file renamed into
// place or removed is so on disk only once its folder is synced.
func (s Store) syncDir() error {
	d, err := os.Open(s.Dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", s.Dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", s.Dir, err)
	}
	return nil
}

// LoadReverted returns the note of the last revert, nil if none.
func (s Store) LoadReverted(socket string) (*Reverted, error) {
	var r Reverted
	ok, err := s.readJSONFile(socket, ".reverted.json", &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

func (s Store) readJSONFile(socket, ext string, v any) (bool, error) {
	if err := s.checkDir(); err != nil {
		return false, err
	}
	b, err := readState(s.path(socket, ext))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("reading %s: %w", s.path(socket, ext), err)
	}
	return true, nil
}
