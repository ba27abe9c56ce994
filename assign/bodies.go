package assign

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/render"
)

// The connections' settings (what a rollback loads again) are kept in
// bodyShards files, each connection in the one its name's hash picks: an
// apply writes the files of the connections it adds, changes or removes,
// not all of them (at 5,000 connections the settings are 4 MB; a
// one-rule change writes about 250 KB). Before, they were one file,
// legacyBodies, which is still read when the files are not all there and
// removed once they are.
const (
	bodyShards   = 16
	legacyBodies = ".bodies.json"
)

// shardSet says which of the settings' files to write.
type shardSet [bodyShards]bool

// allShards writes every file.
var allShards = func() (s shardSet) {
	for k := range s {
		s[k] = true
	}
	return s
}()

// any says whether s names any file.
func (s shardSet) any() bool {
	for _, w := range s {
		if w {
			return true
		}
	}
	return false
}

// bodyShard is the file a connection's settings are kept in.
func bodyShard(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % bodyShards)
}

func shardExt(k int) string { return fmt.Sprintf(".bodies.%02d.json", k) }

// bodyFiles are the settings' files of r that shards names, each with
// all of r's connections that belong in it.
func (s Store) bodyFiles(r *Record, shards shardSet) []jsonFile {
	if !shards.any() {
		return nil
	}
	var parts [bodyShards]bodiesFile
	for k := range parts {
		if shards[k] {
			parts[k] = bodiesFile{}
		}
	}
	for _, c := range r.Conns {
		if p := parts[bodyShard(c.Name)]; p != nil {
			p[c.Name] = c.Body
		}
	}
	var files []jsonFile
	for k, p := range parts {
		if p != nil {
			files = append(files, jsonFile{s.path(r.Socket, shardExt(k)), p})
		}
	}
	return files
}

// hasBodies says whether every settings' file is there and no file of
// before is (else the next write writes them all).
func (s Store) hasBodies(socket string) bool {
	for k := range bodyShards {
		if _, err := os.Stat(s.path(socket, shardExt(k))); err != nil {
			return false
		}
	}
	_, err := os.Stat(s.path(socket, legacyBodies))
	return errors.Is(err, os.ErrNotExist)
}

// shardsCurrent says whether the settings are read from the files rather
// than the one file of before: they are all there, and the file of before
// is not newer than any of them (an older swanmgr, run in between, wrote
// only that one; an apply that stopped before removing it wrote the
// files after it).
func (s Store) shardsCurrent(socket string) bool {
	var oldest time.Time
	for k := range bodyShards {
		fi, err := os.Stat(s.path(socket, shardExt(k)))
		if err != nil {
			return false
		}
		if k == 0 || fi.ModTime().Before(oldest) {
			oldest = fi.ModTime()
		}
	}
	fi, err := os.Stat(s.path(socket, legacyBodies))
	return err != nil || !fi.ModTime().After(oldest)
}

// removeLegacyBodies removes the settings' file of before once the
// files that replace it are in place.
func (s Store) removeLegacyBodies(socket string) error {
	err := os.Remove(s.path(socket, legacyBodies))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing swanmgr's old record of connection settings: %w", err)
	}
	return nil
}

// LoadBodies fills in the recorded connections' settings.
func (s Store) LoadBodies(r *Record) error {
	if r == nil {
		return nil
	}
	var bodies map[string]*render.Section
	var err error
	if s.shardsCurrent(r.Socket) {
		bodies, err = s.readShards(r.Socket)
	} else {
		bodies, err = readBodies(s.path(r.Socket, legacyBodies))
	}
	if err != nil {
		return fmt.Errorf("reading swanmgr's record of connection settings: %w", err)
	}
	for i := range r.Conns {
		r.Conns[i].Body = bodies[r.Conns[i].Name]
	}
	return nil
}

// readShards reads the settings' files, on every CPU.
func (s Store) readShards(socket string) (map[string]*render.Section, error) {
	parts := make([]map[string]*render.Section, bodyShards)
	errs := make([]error, bodyShards)
	var wg sync.WaitGroup
	for k := range bodyShards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[k], errs[k] = readBodies(s.path(socket, shardExt(k)))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make(map[string]*render.Section, n)
	for _, p := range parts {
		for name, b := range p {
			out[name] = b
		}
	}
	return out, nil
}

func readBodies(path string) (map[string]*render.Section, error) {
	f, err := openState(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bodies map[string]*render.Section
	if err := json.NewDecoder(bufio.NewReaderSize(f, 1<<16)).Decode(&bodies); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return bodies, nil
}
