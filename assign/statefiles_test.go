package assign

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// State files written together go in place together: when one of them
// cannot be written, none replaces its earlier copy, and no temporary
// file is left in the state folder.
func TestStateFilesWrittenTogether(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	a, b := filepath.Join(s.Dir, "a.json"), filepath.Join(s.Dir, "b.json")
	if err := s.writeJSONs([]jsonFile{{a, "old a"}, {b, "old b"}}); err != nil {
		t.Fatal(err)
	}
	// A channel cannot be encoded: b fails after a was written.
	err := s.writeJSONs([]jsonFile{{a, "new a"}, {b, make(chan int)}})
	if err == nil || !strings.Contains(err.Error(), "saving swanmgr's record") {
		t.Fatalf("writing an unencodable file: %v", err)
	}
	for p, want := range map[string]string{a: "\"old a\"\n", b: "\"old b\"\n"} {
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q (the earlier copy)", filepath.Base(p), got, err, want)
		}
	}
	ents, _ := os.ReadDir(s.Dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("state folder holds %q; want only a.json and b.json", names)
	}
	// In place, and in order; each file 0600.
	if err := s.writeJSONs([]jsonFile{{a, "new a"}, {b, "new b"}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{a: "\"new a\"\n", b: "\"new b\"\n"} {
		got, _ := os.ReadFile(p)
		fi, err := os.Stat(p)
		if string(got) != want || err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s = %q (%v, %v); want %q, mode 0600", filepath.Base(p), got, fi.Mode(), err, want)
		}
	}
}

// An apply writes its record, settings, guard and policy copy at once; a
// second apply reads back what the first wrote.
func TestApplySavesEveryStateFile(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, newFake())
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, false), Inputs{PolicyFile: "/etc/swanmgr/policy.toml", Policy: []byte("# policy\n"), Restorable: true}); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".json", shardExt(0), shardExt(bodyShards - 1), ".policy.json"} {
		if fi, err := os.Stat(e.Store.path(e.Socket, ext)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("after apply: %v %v; want mode 0600", fi.Mode(), err)
		}
	}
	rec, err := e.Store.Load(e.Socket)
	if err != nil || rec == nil || len(rec.Conns) == 0 {
		t.Fatalf("record after apply: %+v, %v", rec, err)
	}
	if err := e.Store.LoadBodies(rec); err != nil || rec.Conns[0].Body == nil {
		t.Fatalf("settings after apply: %v", err)
	}
	snap, err := e.Store.LoadSnapshot(e.Socket)
	if err != nil || snap == nil || string(snap.Data) != "# policy\n" {
		t.Fatalf("policy copy after apply: %+v, %v", snap, err)
	}
	ents, _ := os.ReadDir(e.Store.Dir)
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), ".record-") {
			t.Errorf("temporary file %s left", ent.Name())
		}
	}
}

// A change writes the settings' files of the connections it changes, and
// the settings read back are what a rollback needs, whichever files were
// written; a state folder of before (one settings file) is read, then
// replaced by the files at the next apply.
func TestSettingsFilesOfTheChangeOnly(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, newFake())
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	mtimes := func() map[int]time.Time {
		out := map[int]time.Time{}
		for k := range bodyShards {
			fi, err := os.Stat(e.Store.path(e.Socket, shardExt(k)))
			if err != nil {
				t.Fatal(err)
			}
			out[k] = fi.ModTime()
		}
		return out
	}
	// Each file's time set back, so that a rewrite shows.
	past := time.Now().Add(-time.Hour)
	for k := range bodyShards {
		os.Chtimes(e.Store.path(e.Socket, shardExt(k)), past, past)
	}
	desired := renderPolicy(t, 6668, true) // the connection to bob changes
	var changed []string
	rec, _ := e.Store.Load(e.Socket)
	for _, c := range desired.Conns {
		if rc := rec.Conn(c.Name); rc == nil || rc.Hash != c.Hash() {
			changed = append(changed, c.Name)
		}
	}
	if len(changed) != 1 || len(desired.Conns) < 2 || bodyShard(desired.Conns[0].Name) == bodyShard(desired.Conns[1].Name) {
		t.Fatalf("the test wants one changed connection of two in other files: changed %q", changed)
	}
	if _, err := e.Apply(ctx, desired, Inputs{}); err != nil {
		t.Fatal(err)
	}
	for k, m := range mtimes() {
		if rewritten := m.After(past.Add(time.Minute)); rewritten != (k == bodyShard(changed[0])) {
			t.Errorf("file %d rewritten %v; want only the changed connection's (%d)", k, rewritten, bodyShard(changed[0]))
		}
	}
	rec, _ = e.Store.Load(e.Socket)
	if err := e.Store.LoadBodies(rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range desired.Conns {
		if got, want := viewOfBody(rec.Conn(c.Name).Body), viewOfBody(c.Body); got != want {
			t.Errorf("%s read back as %q, want %q", c.Name, got, want)
		}
	}

	// A state folder of before: one file of every connection's settings.
	old := bodiesFile{}
	for _, c := range desired.Conns {
		old[c.Name] = c.Body
	}
	for k := range bodyShards {
		os.Remove(e.Store.path(e.Socket, shardExt(k)))
	}
	if err := e.Store.writeJSON(e.Store.path(e.Socket, legacyBodies), old); err != nil {
		t.Fatal(err)
	}
	rec, _ = e.Store.Load(e.Socket)
	if err := e.Store.LoadBodies(rec); err != nil || viewOfBody(rec.Conns[0].Body) != viewOfBody(desired.Conns[0].Body) {
		t.Fatalf("the settings of before read back: %v", err)
	}
	if _, err := e.Apply(ctx, renderPolicy(t, 6667, true), Inputs{}); err != nil {
		t.Fatal(err)
	}
	if !e.Store.hasBodies(e.Socket) {
		t.Error("after an apply, the settings' files are not all there")
	}
	if _, err := os.Stat(e.Store.path(e.Socket, legacyBodies)); !os.IsNotExist(err) {
		t.Errorf("the settings' file of before is still there (%v)", err)
	}
	if err := e.Store.Remove(e.Socket); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(e.Store.Dir); len(ents) > 1 { // the fingerprint key stays
		var names []string
		for _, ent := range ents {
			names = append(names, ent.Name())
		}
		t.Errorf("after Remove: %q", names)
	}
}
