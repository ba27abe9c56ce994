package model

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// Limits on a policy file, checked before the text reaches the TOML
// decoder. The decoder's cost grows with the square of a key's depth (a
// 32 KB file of one dotted key with 16,000 parts took 2.9 GB), so depth is
// refused up front rather than bounded by the decoder.
const (
	// MaxFileSize is the largest policy file swanmgr reads: 16 MiB. A
	// generated policy of 10,000 rules, each with its own filter list and
	// filter action, is about 3.5 MB.
	MaxFileSize = 16 << 20

	// MaxNesting is how deeply arrays and inline tables ([ and {) may nest.
	// The policy format needs two (authentication = [ { ... } ]).
	MaxNesting = 16

	// MaxKeyParts is how many dotted parts one key or table header may
	// have. The deepest key of the format has four
	// (policy.rule.authentication.method).
	MaxKeyParts = 16
)

// ReadFile reads a policy file, refusing one larger than MaxFileSize
// without reading all of it (a device or a huge file named by mistake
// cannot exhaust memory).
//
// A folder is read as a folder policy (see dir.go): its *.toml files in
// name order, the same limits for each and for all of them together.
func ReadFile(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	size := int64(0)
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return readFolder(path)
		}
		size = st.Size()
		if !st.Mode().IsRegular() && !st.IsDir() {
			return nil, fmt.Errorf("reading policy: %s is not a regular file", path)
		}
		if st.Size() > MaxFileSize {
			return nil, Problems{*tooLarge(path, st.Size())}
		}
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	defer fh.Close()
	// Read into a buffer of the size Stat saw (plus one byte to see the
	// end), not one grown by doubling: policies run to megabytes.
	var buf bytes.Buffer
	buf.Grow(int(min(size, MaxFileSize)) + 1)
	_, err = buf.ReadFrom(io.LimitReader(fh, MaxFileSize+1))
	b := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	if len(b) > MaxFileSize { // it grew since Stat
		return nil, Problems{{File: path, Msg: fmt.Sprintf("the policy file is larger than %d bytes (16 MiB), the most swanmgr reads", MaxFileSize)}}
	}
	if isBundle(b) {
		// Only a folder reads as one.
		return nil, Problems{{File: path, Line: 1, Msg: "the file holds a NUL byte, which a policy file cannot"}}
	}
	return b, nil
}

func tooLarge(path string, n int64) *Problem {
	return &Problem{File: path, Msg: fmt.Sprintf("the policy file is %d bytes, larger than %d (16 MiB), the most swanmgr reads", n, MaxFileSize)}
}

// checkLimits scans a TOML text for what would make the decoder slow or
// hungry: a file over MaxFileSize, [ and { nested deeper than MaxNesting,
// a key or table header of more than MaxKeyParts dotted parts. It knows
// enough TOML to skip strings (basic, literal, multi-line) and comments,
// and runs in one pass over the bytes with constant memory.
func checkLimits(path string, data []byte) *Problem {
	if len(data) > MaxFileSize {
		return tooLarge(path, int64(len(data)))
	}
	var (
		line      = 1
		stack     [MaxNesting]byte // open '[' or '{', innermost last
		depth     int
		lineStart = true // nothing but blanks so far on this line
		inHeader  bool   // inside a [table] or [[array]] header
		inKey     = true // where a key is written: header, line start, after { or , in an inline table
		parts     = 1    // dotted parts of the current key
	)
	tooDeep := func() *Problem {
		return &Problem{File: path, Line: line, Msg: fmt.Sprintf("arrays and inline tables nest deeper than %d levels; a policy file needs at most 2", MaxNesting)}
	}
	tooLong := func() *Problem {
		return &Problem{File: path, Line: line, Msg: fmt.Sprintf("a key or table name has more than %d dotted parts; the longest in a policy file has 4", MaxKeyParts)}
	}
	startKey := func() { inKey, parts = true, 1 }
	n := len(data)
	for i := 0; i < n; i++ {
		c := data[i]
		if c == '\n' {
			line++
			lineStart = true
			inHeader = false
			if depth == 0 {
				startKey()
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' {
			continue
		}
		atStart := lineStart
		lineStart = false
		switch c {
		case '#':
			for i+1 < n && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			triple := i+2 < n && data[i+1] == c && data[i+2] == c
			if triple {
				i += 3
				for ; i < n; i++ {
					if data[i] == '\n' {
						line++
					} else if c == '"' && data[i] == '\\' {
						if i+1 < n && data[i+1] == '\n' {
							line++
						}
						i++
					} else if i+2 < n && data[i] == c && data[i+1] == c && data[i+2] == c {
						// Up to two more quotes may belong to the content.
						i += 2
						for i+1 < n && data[i+1] == c {
							i++
						}
						break
					}
				}
				continue
			}
			for i++; i < n && data[i] != c && data[i] != '\n'; i++ {
				if c == '"' && data[i] == '\\' && i+1 < n && data[i+1] != '\n' {
					i++
				}
			}
			if i < n && data[i] == '\n' {
				i-- // an unterminated string: the decoder reports it; count the line
			}
		case '[':
			if atStart && depth == 0 {
				inHeader = true
				startKey()
				if i+1 < n && data[i+1] == '[' {
					i++
				}
				continue
			}
			if depth == MaxNesting {
				return tooDeep()
			}
			stack[depth] = '['
			depth++
			inKey = false
		case '{':
			if depth == MaxNesting {
				return tooDeep()
			}
			stack[depth] = '{'
			depth++
			startKey()
		case ']', '}':
			if inHeader {
				inHeader, inKey = false, false
				continue
			}
			if depth > 0 {
				depth--
			}
			inKey = false
		case ',':
			if depth > 0 && stack[depth-1] == '{' {
				startKey()
			}
		case '=':
			if !inHeader {
				inKey = false
			}
		case '.':
			if inKey {
				parts++
				if parts > MaxKeyParts {
					return tooLong()
				}
			}
		}
	}
	return nil
}

// FolderFiles lists the files of a folder policy, in the order they are
// read: *.toml directly in dir, not beginning with a dot, not folders (a
// symbolic link is followed, as conf.d does).
func FolderFiles(dir string) ([]string, error) {
	ms, err := folderMembers(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.path
	}
	return out, nil
}

// readFolder reads a folder policy's files into a bundle. Files whose
// names begin with a dot (an editor's) and names not ending in .toml are
// not read, as swanctl reads conf.d/*.conf.
func readFolder(dir string) ([]byte, error) {
	members, err := folderMembers(dir)
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, Problems{{File: dir, Msg: "the policy folder has no *.toml file"}}
	}
	// Thousands of small files (one per peer): read by a few readers at
	// once, since each costs its system calls more than its bytes. The
	// first problem in name order is the one reported, as read one by one.
	datas := make([]readResult, len(members))
	// The files are opened by name in the folder (openat): the kernel
	// then looks up one name, not every folder of the path, per file.
	dirfd := -1
	if fd, err := openDir(dir); err == nil {
		dirfd = fd
		defer syscall.Close(fd)
	}
	// total bounds what the readers hold together; past it the rest is
	// not read.
	var total atomic.Int64
	eachOn(folderReaders, len(members), func() func(int) {
		scratch := make([]byte, memberBlock)
		return func(i int) {
			if total.Load() > MaxFileSize {
				datas[i].err = errFolderTooLarge
				return
			}
			b, err := readMember(dirfd, members[i], scratch[:memberScratch])
			if len(b) > 0 && &b[0] == &scratch[0] {
				// Read into scratch and kept there: the next file goes
				// after it (one block for dozens of files, not an
				// allocation for each).
				scratch = scratch[len(b):]
				if len(scratch) < memberScratch {
					scratch = make([]byte, memberBlock)
				}
			}
			total.Add(int64(len(b)))
			datas[i] = readResult{b, err}
		}
	})
	files := make([]bundleFile, 0, len(members))
	var sum int64
	for i, m := range members {
		p := m.path
		b, err := datas[i].data, datas[i].err
		if err == errFolderTooLarge {
			sum = MaxFileSize + 1
		} else if err != nil {
			return nil, err
		} else if bytes.IndexByte(b, 0) >= 0 {
			return nil, Problems{{File: p, Line: 1 + bytes.Count(b[:bytes.IndexByte(b, 0)], []byte{'\n'}), Msg: "the file holds a NUL byte, which a policy file cannot"}}
		}
		if sum += int64(len(b)); sum > MaxFileSize {
			return nil, Problems{{File: dir, Msg: fmt.Sprintf("the policy folder's *.toml files are larger than %d bytes (16 MiB) together, the most swanmgr reads", MaxFileSize)}}
		}
		files = append(files, bundleFile{name: filepath.Base(p), data: b})
	}
	return makeBundle(files), nil
}

// readMember reads one file of a folder as ReadFile does, without an
// os.File (at thousands of files, os.Open's poller registration and
// finalizer cost more than the reading): open, without waiting for a
// FIFO's writer; fstat; a read to its size and one more to see the end;
// close. A file the folder's listing says is regular (m.regular) is read
// into scratch without the fstat (the bytes returned are then scratch's
// first), and is read as any other when it is
// empty (the listing may be older than the file: a FIFO's read ends at
// once) or does not fit. With dirfd (the folder, open; -1: none) the file
// is opened by its name in it.
func readMember(dirfd int, m folderEntry, scratch []byte) ([]byte, error) {
	path := m.path
	fd, err := openMember(dirfd, path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer syscall.Close(fd)
	if m.regular && len(scratch) > 0 {
		n, err := readInto(fd, scratch)
		if err != nil {
			return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "read", Path: path, Err: err})
		}
		if n > 0 && n < len(scratch) {
			return scratch[:n:n], nil
		}
		if _, err := syscall.Seek(fd, 0, 0); err != nil && n > 0 {
			return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "seek", Path: path, Err: err})
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("reading policy: %s is not a regular file", path)
	}
	if st.Size > MaxFileSize {
		return nil, Problems{*tooLarge(path, st.Size)}
	}
	// One byte more than Fstat saw, to see the end in one read.
	buf := make([]byte, st.Size+1)
	n, err := readInto(fd, buf)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", &os.PathError{Op: "read", Path: path, Err: err})
	}
	if int64(n) > st.Size {
		// It grew since: read it the long way, with its limits.
		return ReadFile(path)
	}
	return buf[:n], nil
}

// readInto reads fd into b until its end or b is full, and returns how
// much it read.
func readInto(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := syscall.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			break
		}
		n += k
	}
	return n, nil
}

// memberScratch is what a folder's reader reads a regular file into: the
// files of a folder of one file per peer are a few hundred bytes.
const memberScratch = 16 << 10

// memberBlock is what a folder's reader reads its files into, one after
// the other, each taking memberScratch at most.
const memberBlock = 64 << 10

func openMember(dirfd int, path string) (int, error) {
	for {
		var fd int
		var err error
		if dirfd >= 0 {
			fd, err = syscall.Openat(dirfd, filepath.Base(path), syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		} else {
			fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		}
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// openDir opens a folder to open its files by name (openMember).
func openDir(dir string) (int, error) {
	for {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_DIRECTORY, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// folderReaders is how many of a folder's files are read at once.
const folderReaders = 4

type readResult struct {
	data []byte
	err  error
}

// errFolderTooLarge marks a file not read because the ones read before it
// already passed the size limit.
var errFolderTooLarge = errors.New("policy folder too large")
