package assign

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	err := os.Remove(s.path(socket, ".confirm.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the pending confirmation: %w", err)
	}
	// Until the folder is synced, a power loss can bring the file back:
	// the agent would then revert a change that was confirmed.
	return s.syncDir()
}

// SaveReverted notes a revert for status (nil removes the note).
func (s Store) SaveReverted(socket string, r *Reverted) error {
	if r == nil {
		err := os.Remove(s.path(socket, ".reverted.json"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return s.syncDir()
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
