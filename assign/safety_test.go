package assign

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A state folder others can write to is refused before anything is sent
// to charon: its pending note could name foreign connections for root's
// next apply to unload.
func TestUnsafeStateFolderIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"world-writable", func(t *testing.T, dir string) { os.Chmod(dir, 0o777) }, "chmod 700"},
		{"group-writable", func(t *testing.T, dir string) { os.Chmod(dir, 0o770) }, "chmod 700"},
		{"another owner", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give the folder away")
			}
			os.Chown(dir, 65534, 65534)
		}, "belongs to uid 65534"},
		{"parent writable by others", func(t *testing.T, dir string) {
			os.Chmod(filepath.Dir(dir), 0o777)
		}, "not sticky"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFake()
			e := newEngine(t, d)
			e.Store.Dir = filepath.Join(t.TempDir(), "parent", "state")
			if err := os.MkdirAll(e.Store.Dir, 0o700); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, e.Store.Dir)
			_, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
			var ue *UnsafeStateError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply: %v; want an UnsafeStateError saying %q", err, tc.want)
			}
			if len(d.calls) != 0 {
				t.Fatalf("charon was sent %q", d.calls)
			}
			if _, err := e.Store.Load(e.Socket); !errors.As(err, &ue) {
				t.Fatalf("load: %v", err)
			}
		})
	}
}

// State files are opened without following symbolic links: a dangling
// link in place of the lock does not make swanmgr create a file at its
// target, and a linked pending note is refused.
func TestStateFilesDoNotFollowLinks(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if err := os.MkdirAll(e.Store.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "created-by-swanmgr")
	if err := os.Symlink(target, e.Store.path(e.Socket, ".lock")); err != nil {
		t.Fatal(err)
	}
	_, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{})
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("apply with a linked lock: %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock link's target was created: %v", err)
	}
	os.Remove(e.Store.path(e.Socket, ".lock"))

	foreign := filepath.Join(t.TempDir(), "pending.json")
	os.WriteFile(foreign, []byte(`{"conns":["hand-made"]}`), 0o600)
	if err := os.Symlink(foreign, e.Store.path(e.Socket, ".pending.json")); err != nil {
		t.Fatal(err)
	}
	d.conns["hand-made"] = "by hand"
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("apply with a linked pending note: %v", err)
	}
	if d.conns["hand-made"] == "" {
		t.Fatal("a connection named in a linked pending note was unloaded")
	}
}

// Unassign removes the lock file too, and a later apply works.
func TestUnassignRemovesLock(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Unassign(ctx); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(e.Store.Dir); len(ents) != 1 || ents[0].Name() != FingerprintKeyFile {
		var names []string
		for _, x := range ents {
			names = append(names, x.Name())
		}
		t.Fatalf("state folder after unassign holds %v; want only %s", names, FingerprintKeyFile)
	}
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{}); err != nil {
		t.Fatal(err)
	}
}
