package assign

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The state folder decides what swanmgr unloads from charon (its record
// and the note of an unfinished apply): whoever can write there can make
// root's next apply unload connections that are not swanmgr's. So the
// folder must belong to the user swanmgr runs as and be writable by no one
// else, its parent must not let others replace it, and files in it are
// opened without following symbolic links.

// UnsafeStateError says the state folder (or a file in it) could be
// changed by someone else; Fix says how to make it safe.
type UnsafeStateError struct {
	Path, Why, Fix string
}

func (e *UnsafeStateError) Error() string {
	return fmt.Sprintf("swanmgr's state folder is not safe: %s %s; %s (it decides which connections swanmgr may unload)", e.Path, e.Why, e.Fix)
}

// ensureDir creates the state folder if needed (mode 0700) and checks
// that it is safe.
func (s Store) ensureDir() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	return s.checkDir()
}

// checkDir checks an existing state folder; a missing one is fine (there
// is nothing in it to trust).
func (s Store) checkDir() error {
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		// A link is fine if what it points to, and the link's own folder,
		// are safe.
		if err := safeParent(dir); err != nil {
			return err
		}
		if dir, err = filepath.EvalSymlinks(dir); err != nil {
			return fmt.Errorf("state folder: %w", err)
		}
		if fi, err = os.Stat(dir); err != nil {
			return fmt.Errorf("state folder: %w", err)
		}
	}
	if !fi.IsDir() {
		return &UnsafeStateError{Path: dir, Why: "is not a folder", Fix: "move it away or choose another --state-dir"}
	}
	if err := owned(dir, fi, "folder"); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &UnsafeStateError{Path: dir, Why: fmt.Sprintf("is writable by group or others (mode %04o)", fi.Mode().Perm()),
			Fix: "run chmod 700 " + dir}
	}
	return safeParent(dir)
}

// safeParent refuses a parent folder others can write to, unless it is
// sticky (like /tmp): there, only its owner can rename or remove entries.
func safeParent(path string) error {
	parent := filepath.Dir(path)
	pi, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	if pi.Mode().Perm()&0o002 != 0 && pi.Mode()&fs.ModeSticky == 0 {
		return &UnsafeStateError{Path: parent, Why: fmt.Sprintf("(the state folder's parent) is writable by others and not sticky (mode %04o)", pi.Mode().Perm()),
			Fix: "choose a --state-dir in a folder only root can write to"}
	}
	return nil
}

func owned(path string, fi fs.FileInfo, what string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if me := os.Geteuid(); int(st.Uid) != me {
		return &UnsafeStateError{Path: path, Why: fmt.Sprintf("(a %s) belongs to uid %d, not to uid %d that swanmgr runs as", what, st.Uid, me),
			Fix: fmt.Sprintf("run chown %d %s, or choose another --state-dir", me, path)}
	}
	return nil
}

// openState opens a file of the state folder for reading without
// following a symbolic link, and checks it belongs to this user and no one
// else can write it.
func openState(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &UnsafeStateError{Path: path, Why: "is a symbolic link", Fix: "remove it"}
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = owned(path, fi, "file")
	}
	if err == nil && fi.Mode().Perm()&0o022 != 0 {
		err = &UnsafeStateError{Path: path, Why: fmt.Sprintf("is writable by group or others (mode %04o)", fi.Mode().Perm()), Fix: "run chmod 600 " + path}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readState reads a whole state file with openState's checks.
func readState(path string) ([]byte, error) {
	f, err := openState(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// At its size, as os.ReadFile does: io.ReadAll grows its buffer from
	// 512 bytes, twice the size of a 4 MB record in all.
	size := 0
	if fi, err := f.Stat(); err == nil && fi.Size() < 1<<30 {
		size = int(fi.Size())
	}
	b := make([]byte, 0, size+1)
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}
