package status

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/assign"
)

// RecordReader reads swanmgr's record of a socket (with the connections'
// settings) for repeated views, again only when the state folder changed:
// a record is saved by renaming a new file into the folder, which changes
// the folder's modification time. It may be used from several goroutines;
// the record it returns must not be modified.
type RecordReader struct {
	Store  assign.Store
	Socket string

	mu     sync.Mutex
	mod    time.Time
	rec    *assign.Record
	loaded bool
}

// Load returns the record, nil when swanmgr assigned nothing to the socket.
func (r *RecordReader) Load() (*assign.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.Store.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			r.rec, r.loaded = nil, false
			return nil, nil
		}
		return nil, fmt.Errorf("reading swanmgr's record: %w", err)
	}
	if r.loaded && fi.ModTime().Equal(r.mod) {
		return r.rec, nil
	}
	rec, err := r.Store.Load(r.Socket)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if err := r.Store.LoadBodies(rec); err != nil {
			return nil, err
		}
		// Build the record's name index now, while it is ours alone.
		rec.Conn("")
	}
	r.rec, r.mod, r.loaded = rec, fi.ModTime(), true
	return rec, nil
}
