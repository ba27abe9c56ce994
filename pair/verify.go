package pair

import (
	"errors"
	"fmt"
	"time"

	"github.com/swanmgr/swanmgr/model"
)

// Load validates and renders a policy file's text as an Endpoint, looking
// up variables in env first. The caller supplies it: validation reads the
// files a policy names, and pair reads none.
type Load func(path string, text []byte, env map[string]model.Secret) (*Endpoint, error)

// ErrMirrorBroken is matched by VerifyMirror's error: the mirrored policy
// does not validate or does not agree with its source, a bug in Mirror.
var ErrMirrorBroken = errors.New("a bug in mirror")

// MirrorError is VerifyMirror's error. Problems are what Check found (none
// when the output did not validate).
type MirrorError struct {
	Source   string
	Err      error // the validation error, or nil
	Problems []Problem
}

func (e *MirrorError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("the mirrored policy does not validate (a bug in mirror; nothing written): %v", e.Err)
	}
	return fmt.Sprintf("the mirrored policy does not agree with %s (a bug in mirror; nothing written)", e.Source)
}

func (e *MirrorError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrMirrorBroken, e.Err}
	}
	return []error{ErrMirrorBroken}
}

// VerifyMirror holds Mirror's promise before anyone writes or loads its
// output: the mirrored policy validates and agrees with its source (Check
// finds no problem, certificates verified as of now). It loads m as the
// file at path, with the files the peer is to get copies of (m.Copies)
// read from where the source has them and the keys the source holds
// inline (m.Env) looked up in memory.
//
// When the output names certificate files the peer has yet to provide
// (m.NeedsFiles) and does not validate without them, it returns
// verified = false and no error, with the reason: the file can be
// written and checked once they exist. Any other failure is a
// *MirrorError.
func VerifyMirror(src *Endpoint, m *Mirrored, path string, load Load, now time.Time) (verified bool, notYet error, err error) {
	text := m.verify
	if text == nil {
		text = m.Text
	}
	dst, lerr := load(path, text, m.Env)
	switch {
	case lerr != nil && m.NeedsFiles:
		return false, lerr, nil
	case lerr != nil:
		return false, nil, &MirrorError{Source: src.Path, Err: lerr}
	}
	if rep := Check([]Endpoint{*src, *dst}, now); !rep.OK() {
		return false, nil, &MirrorError{Source: src.Path, Problems: rep.Problems}
	}
	return true, nil, nil
}
