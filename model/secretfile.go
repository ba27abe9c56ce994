package model

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// secretFileControl says why someone other than the user running swanmgr
// (or root) could choose the content of a secret file, or "" if nobody
// can: the file belongs to another user, or it or one of its folders sits
// in a folder others may write to, where they could put a file of their
// own in its place. A world-writable folder with the sticky bit (/tmp) is
// safe for a file swanmgr's user owns: others cannot rename or delete it.
// The message follows the file's name.
func secretFileControl(file string, st fs.FileInfo) string {
	uid := os.Geteuid()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != uid && sys.Uid != 0 {
		return fmt.Sprintf("belongs to user %d, not to you (%d) or root: that user can change the key; run chown %d %s, or pass --insecure-secrets", sys.Uid, uid, uid, file)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return ""
	}
	paths := []string{abs}
	// A symbolic link's target counts as much as the link.
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			dst, err := os.Stat(dir)
			if err != nil {
				break
			}
			perm := dst.Mode().Perm()
			if perm&0o002 != 0 && dst.Mode()&fs.ModeSticky == 0 {
				return fmt.Sprintf("is in %s, which every user may write to (mode %04o): another user could put their own file in its place; move the file or run chmod o-w %s, or pass --insecure-secrets", dir, perm, dir)
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return ""
}
