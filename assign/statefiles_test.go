package assign

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, ext := range []string{".json", ".bodies.json", ".policy.json"} {
		if _, err := os.Stat(e.Store.path(e.Socket, ext)); err != nil {
			t.Errorf("after apply: %v", err)
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
