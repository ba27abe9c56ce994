package model

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// The folder's listing (getdents64) names and types every entry as
// os.ReadDir does, in its order, across more entries than one read of
// the kernel's returns; FolderFiles keeps what it kept before: *.toml
// not beginning with a dot, links followed, folders left out.
func TestFolderListingAsReadDir(t *testing.T) {
	dir := t.TempDir()
	for i := range 3000 { // some 100 KB of entries
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("peer-%05d-%s.toml", 2999-i, strings.Repeat("x", i%40))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{".hidden.toml", "notes.txt", "é-unicode.toml"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "sub.toml"), 0o755)
	os.Symlink("é-unicode.toml", filepath.Join(dir, "link.toml"))
	os.Symlink("sub.toml", filepath.Join(dir, "dirlink.toml"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.toml"), 0o644); err != nil {
		t.Fatal(err)
	}
	listed, err := listFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var types []byte
	for _, e := range listed {
		names, types = append(names, e.name), append(types, e.typ)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(entries) {
		t.Fatalf("%d names, os.ReadDir %d", len(names), len(entries))
	}
	for i, e := range entries {
		if names[i] != e.Name() {
			t.Fatalf("entry %d: %q, os.ReadDir %q", i, names[i], e.Name())
		}
		want := map[bool]byte{true: dtReg}[e.Type().IsRegular()]
		switch {
		case e.IsDir():
			want = dtDir
		case e.Type()&os.ModeSymlink != 0:
			want = dtLink
		case e.Type()&os.ModeNamedPipe != 0:
			want = 1 // DT_FIFO
		}
		if types[i] != want {
			t.Errorf("%s: type %d, want %d", e.Name(), types[i], want)
		}
	}
	ms, err := folderMembers(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, filepath.Base(m.path))
		if m.regular != strings.HasPrefix(filepath.Base(m.path), "peer-") && filepath.Base(m.path) != "é-unicode.toml" {
			t.Errorf("%s: regular %v", m.path, m.regular)
		}
	}
	var want []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".toml") || n == "sub.toml" || n == "dirlink.toml" {
			continue
		}
		want = append(want, n)
	}
	if !slices.Equal(got, want) {
		t.Errorf("members %d, want %d (first differing: %v)", len(got), len(want), firstDiff(got, want))
	}
	if _, err := listFolder(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing folder listed")
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " / " + b[i]
		}
	}
	return "lengths"
}

// A file the listing says is regular is read whole, small, empty or
// larger than the scratch buffer; one that is not regular by the time it
// is read (a FIFO put in its place) is refused, as any FIFO is.
func TestReadMemberListedRegular(t *testing.T) {
	dir := t.TempDir()
	fd, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	scratch := make([]byte, 64)
	for name, data := range map[string][]byte{
		"small.toml": []byte("a = 1\n"),
		"empty.toml": {},
		"fits.toml":  bytes.Repeat([]byte("y"), 63),
		"full.toml":  bytes.Repeat([]byte("z"), 64),
		"large.toml": bytes.Repeat([]byte("b = 2\n"), 1000),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, regular := range []bool{true, false} {
			got, err := readMember(fd, folderEntry{path: p, regular: regular}, scratch)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s (regular %v): %d bytes, %v; want %d", name, regular, len(got), err, len(data))
			}
		}
	}
	p := filepath.Join(dir, "was-regular.toml")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readMember(fd, folderEntry{path: p, regular: true}, scratch); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO listed as regular: %q, %v; want refused", got, err)
	}
}

// A folder's files read one after another into a reader's block come
// back each as it is: hundreds of them, of sizes that fill a block
// part-way, exactly, and not at all (larger than memberScratch), none
// overwriting another.
func TestReadFolderFilesKeepTheirBytes(t *testing.T) {
	dir := t.TempDir()
	want := map[string][]byte{}
	for i := range 600 {
		size := 1 + (i*977)%3000
		switch i % 97 {
		case 5:
			size = memberScratch - 1
		case 6:
			size = memberScratch
		case 7:
			size = memberScratch + 100
		}
		data := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
		copy(data, fmt.Sprintf("# file %d\n", i))
		name := fmt.Sprintf("f-%04d.toml", i)
		want[name] = data
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := readFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, ok := splitBundle(data)
	if !ok || len(files) != len(want) {
		t.Fatalf("bundle of %d files (ok %v), want %d", len(files), ok, len(want))
	}
	for _, f := range files {
		if !bytes.Equal(f.data, want[f.name]) {
			t.Errorf("%s: %d bytes read back differ from the %d written", f.name, len(f.data), len(want[f.name]))
		}
	}
}
