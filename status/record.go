package status

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/assign"
)

// Records gives a view swanmgr's record of the socket. Reading the
// connections' settings (the record's bodies) can take longer than charon
// takes to list a thousand SAs, so they are asked for only when the view
// needs them (NeedsBodies).
type Records interface {
	// Record returns the record without the connections' settings; nil
	// when swanmgr assigned nothing to the socket.
	Record() (*assign.Record, error)
	// WithBodies returns the record with them.
	WithBodies() (*assign.Record, error)
}

// RecordReader reads swanmgr's record of a socket for repeated views, and
// again only when the state folder changed: a record is saved by renaming
// a new file into the folder, which changes the folder's modification
// time. It may be used from several goroutines; the records it returns
// are shared and must not be modified.
type RecordReader struct {
	Store  assign.Store
	Socket string

	mu         sync.Mutex
	mod        time.Time
	rec        *assign.Record // without bodies
	withBodies *assign.Record
	loaded     bool
}

var _ Records = (*RecordReader)(nil)

// Record returns the record without the connections' settings.
func (r *RecordReader) Record() (*assign.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.load()
}

// WithBodies returns the record with the connections' settings.
func (r *RecordReader) WithBodies() (*assign.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.load()
	if err != nil || rec == nil {
		return rec, err
	}
	if r.withBodies == nil {
		full := *rec
		full.Conns = slices.Clone(rec.Conns)
		if err := r.Store.LoadBodies(&full); err != nil {
			return nil, err
		}
		r.withBodies = &full
	}
	return r.withBodies, nil
}

// load reads the record if the folder changed. Call with mu held.
func (r *RecordReader) load() (*assign.Record, error) {
	fi, err := os.Stat(r.Store.Dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			r.rec, r.withBodies, r.loaded = nil, nil, false
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
		// Build the record's name index now, while it is ours alone.
		rec.Conn("")
	}
	r.rec, r.withBodies, r.mod, r.loaded = rec, nil, fi.ModTime(), true
	return rec, nil
}
