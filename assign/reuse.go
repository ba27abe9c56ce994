package assign

import (
	"bufio"
	"fmt"

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
	data, err := readState(s.path(socket, ".decoded"))
	if err != nil || programFingerprint() == "" {
		data = nil
	}
	return model.NewReuse(programFingerprint(), data)
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
		return s.writeReuse(socket, data)
	}
}

func (s Store) writeReuse(socket string, data []byte) error {
	if err := s.ensureDir(); err != nil {
		return err
	}
	if err := s.writeJSONs([]jsonFile{{s.path(socket, ".decoded"), rawState(data)}}); err != nil {
		return fmt.Errorf("keeping the decoded policy files: %w", err)
	}
	return nil
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
	data, err := readState(s.path(socket, ".rendered"))
	if err != nil || programFingerprint() == "" {
		data = nil // a program that cannot tell itself apart takes nothing
	}
	return render.NewPrior(programFingerprint(), data)
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
		if err := s.ensureDir(); err != nil {
			return err
		}
		if err := s.writeJSONs([]jsonFile{{s.path(socket, ".rendered"), priorState{res}}}); err != nil {
			return fmt.Errorf("keeping the rendered connections: %w", err)
		}
		return nil
	}
}

// priorState is the rendered connections' state file, written as it is
// made (render.Result.WritePrior): 3.5 MB at 5,000 connections, never
// held whole.
type priorState struct{ res *render.Result }

func (p priorState) writeState(w *bufio.Writer) error {
	return p.res.WritePrior(w, programFingerprint())
}
