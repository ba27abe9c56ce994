package model

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"unsafe"
)

// folderEntry is a file of a folder policy to read; regular when the folder's
// listing says it is a regular file (not a link), which reading it then
// need not ask again.
type folderEntry struct {
	path    string
	regular bool
}

// Types of a folder's entries, as the kernel lists them (d_type).
const (
	dtUnknown = 0
	dtDir     = 4
	dtReg     = 8
	dtLink    = 10
)

// folderMembers is FolderFiles with what the listing says of each file.
// The folder is listed with getdents64 into one buffer, a few system
// calls for thousands of files (os.ReadDir reads 8 KB at a time, some
// 20 calls at 5,000 files, and makes each entry an object).
func folderMembers(dir string) ([]folderEntry, error) {
	entries, err := listFolder(dir)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	var out []folderEntry
	for _, e := range entries {
		name := e.name
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".toml") {
			continue
		}
		p := memberPath(dir, name)
		switch e.typ {
		case dtDir:
			continue
		case dtLink, dtUnknown:
			// A link is followed, as conf.d does (and an entry the
			// file system did not type is asked for its type).
			st, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("reading policy: %w", err)
			}
			if st.IsDir() {
				continue
			}
			out = append(out, folderEntry{path: p})
		case dtReg:
			out = append(out, folderEntry{path: p, regular: true})
		default:
			// Anything else that is not a regular file (a FIFO, a
			// device) is refused by the reading.
			out = append(out, folderEntry{path: p})
		}
	}
	return out, nil
}

// dirEntry is a name in a folder and its d_type.
type dirEntry struct {
	name string
	typ  byte
}

// listFolder returns the entries of dir, sorted by name.
func listFolder(dir string) ([]dirEntry, error) {
	fd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var entries []dirEntry
	buf := make([]byte, 256<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16,
			// type u8, then the name, NUL-terminated.
			const nameAt = 19
			if len(b) < nameAt {
				return nil, syscall.EIO
			}
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < nameAt || reclen > len(b) {
				return nil, syscall.EIO
			}
			rec := b[:reclen]
			b = b[reclen:]
			name := rec[nameAt:]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			entries = append(entries, dirEntry{string(name), rec[18]})
		}
	}
	slices.SortFunc(entries, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return entries, nil
}
