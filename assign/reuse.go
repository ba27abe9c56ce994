package assign

import (
	"bufio"
	"fmt"
	"sync"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// A policy folder's decoded files (model.Reuse) are kept beside the
// record, so that the next apply of the folder decodes only the files
// that changed. They are a cache: keyed by each file's text and by this
// program, never holding a secret (model.Reuse keeps no file with an
// inline one), and anything that does not read is as if there were none.

// LoadReuse returns the decoded files kept for socket's last applies
// (empty when there are none, or they do not read: then every file is
// decoded). Call it under the socket's lock.
func (s Store) LoadReuse(socket string) *model.Reuse {
	return model.NewReuse(programFingerprint(), s.readCache(socket, ".decoded"))
}

// readCache is a cache file of socket's (ext), nil when there is none or
// it does not read, or when this program cannot tell itself apart from
// another (programFingerprint): then it takes nothing kept.
func (s Store) readCache(socket, ext string) []byte {
	if programFingerprint() == "" {
		return nil
	}
	data, err := readState(s.path(socket, ext))
	if err != nil {
		return nil
	}
	return data
}

// writeCache writes a cache file of socket's (ext), which keeps what
// (for the error).
func (s Store) writeCache(socket, ext, what string, v stateWriter) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := s.writeJSONs([]jsonFile{{s.path(socket, ext), v}}); err != nil {
		return fmt.Errorf("keeping %s: %w", what, err)
	}
	return nil
}

// NewReuse returns an empty Reuse for this program, for a caller that
// keeps one in memory (the agent).
func NewReuse() *model.Reuse { return model.NewReuse(programFingerprint(), nil) }

// SaveReuse encodes r's files for the next apply when they changed (those
// of the folder just read; the files read back are copied as they were),
// and returns what writes them, under a temporary name moved in place: r
// need not be kept while it runs. Call both under the socket's lock.
func (s Store) SaveReuse(socket string, r *model.Reuse) func() error {
	if r == nil || !r.Changed() || programFingerprint() == "" {
		return func() error { return nil }
	}
	data, err := r.Bytes()
	return func() error {
		if err != nil {
			return fmt.Errorf("keeping the decoded policy files: %w", err)
		}
		return s.writeCache(socket, ".decoded", "the decoded policy files", rawState(data))
	}
}

// rawState is a state file's bytes, written as they are.
type rawState []byte

func (b rawState) writeState(w *bufio.Writer) error {
	_, err := w.Write(b)
	return err
}

// The connections rendered at the last apply (render.Prior) are kept
// beside the record too, so that the next apply renders only those whose
// rules, peer or endpoint changed. Like the decoded files they are a
// cache, keyed by what each was made from and by this program; they hold
// no secret (render keeps preshared and private keys out of a
// connection's settings), and a form that does not read is as if there
// were none.

// LoadPrior returns the connections kept for socket's last apply (none
// when there are none, or they do not read). Call it under the socket's
// lock.
func (s Store) LoadPrior(socket string) *render.Prior {
	return render.NewPrior(programFingerprint(), s.readCache(socket, ".rendered"))
}

// PriorAhead starts LoadPrior and returns what waits for it: the
// connections are read while the policy is (3.5 MB at 5,000).
func (s Store) PriorAhead(socket string) func() *render.Prior {
	c := make(chan *render.Prior, 1)
	go func() { c <- s.LoadPrior(socket) }()
	return sync.OnceValue(func() *render.Prior { return <-c })
}

// SavePrior returns what keeps res's connections for the next apply,
// under a temporary name moved in place, unless res took every one of
// them from prior and prior held no other (then the file holds them
// already). What it returns may run while res is used (it only reads
// it).
func (s Store) SavePrior(socket string, prior *render.Prior, res *render.Result) func() error {
	if res == nil || !res.HasPrior() || res.AllFrom(prior) || programFingerprint() == "" {
		return func() error { return nil }
	}
	return func() error {
		return s.writeCache(socket, ".rendered", "the rendered connections", priorState{res})
	}
}

// priorState is the rendered connections' state file, written as it is
// made (render.Result.WritePrior): 3.5 MB at 5,000 connections, never
// held whole.
type priorState struct{ res *render.Result }

func (p priorState) writeState(w *bufio.Writer) error {
	return p.res.WritePrior(w, programFingerprint())
}
