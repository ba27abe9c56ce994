package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/internal/linediff"
	"github.com/swanmgr/swanmgr/vici"
	"github.com/swanmgr/swanmgr/vici/vicitest"
)

var update = flag.Bool("update", false, "rewrite the golden documents in testdata/result")

// TestResultJSONGolden runs plan, apply and unassign with -o json through
// one story against the fake charon (first apply, up to date, charon
// losing a connection, an edited rule with live SAs, a rejected apply, an
// invalid file, unassign twice) and compares each document with
// testdata/result/NAME.json (-update rewrites them).
func TestResultJSONGolden(t *testing.T) {
	srv := vicitest.NewServer(t)
	dir := example(t, "alice-bob")
	psk, _ := os.ReadFile(filepath.Join(dir, "alice-bob.psk"))
	key := strings.TrimSpace(string(psk))
	state := t.TempDir()
	alice := filepath.Join(dir, "alice.toml")
	orig, err := os.ReadFile(alice)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--socket", srv.Socket(), "--state-dir", state, "-o", "json"}

	step := func(name string, wantCode int, args ...string) map[string]any {
		t.Helper()
		full := append(append([]string{}, args...), common...)
		if name == "apply-usage" {
			// Arguments after the flags: urfave/cli stops at the first.
			full = append(full, "extra")
		}
		code, out, errs := runCLI(full...)
		if code != wantCode {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, code, wantCode, out, errs)
		}
		if strings.Contains(out+errs, key) {
			t.Fatalf("%s: the preshared key is in the output", name)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s: stdout is not one JSON document: %v\n%s", name, err, out)
		}
		if doc["schema_version"] != float64(ResultSchemaVersion) {
			t.Fatalf("%s: schema_version %v", name, doc["schema_version"])
		}
		got := strings.NewReplacer(srv.Socket(), "SOCKET", dir, "DIR").Replace(out)
		golden := filepath.Join("testdata", "result", name+".json")
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./cli -run TestResultJSONGolden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: document differs from %s (-want +got):\n%s", name, golden, linediff.Diff(string(want), got))
		}
		return doc
	}
	changed := func(name string, doc map[string]any, want bool) {
		t.Helper()
		if doc["changed"] != want {
			t.Errorf("%s: changed = %v, want %v", name, doc["changed"], want)
		}
	}

	changed("plan-new", step("plan-new", ExitOK, "plan", "-f", alice), true)
	if n := srv.Count("load-conn"); n != 0 {
		t.Fatalf("plan -o json sent %d load-conn", n)
	}
	changed("plan-new-exit-code", step("plan-new-exit-code", ExitChanges, "plan", "--exit-code", "-f", alice), true)
	changed("apply-new", step("apply-new", ExitOK, "apply", "-f", alice), true)
	changed("apply-up-to-date", step("apply-up-to-date", ExitOK, "apply", "-f", alice), false)
	changed("plan-same", step("plan-same", ExitOK, "plan", "--exit-code", "-f", alice), false)

	// charon loses the connection (a restart, a stray unload): drift.
	c, err := vici.Dial(context.Background(), srv.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.UnloadConn(ctx, "sm-abczz-with-bob"); err != nil {
		t.Fatal(err)
	}
	changed("plan-drift", step("plan-drift", ExitOK, "plan", "-f", alice), true)
	changed("apply-drift", step("apply-drift", ExitOK, "apply", "-f", alice), true)

	// One filter edited while its SA is up: the CHILD_SA is torn down.
	srv.SetSAs(vicitest.Msg("sm-abczz-with-bob", vicitest.Msg(
		"uniqueid", "7", "version", "2", "state", "ESTABLISHED", "remote-host", "172.31.67.244",
		"child-sas", vicitest.Msg(
			"sm-abczz-with-bob-1-3", vicitest.Msg("name", "sm-abczz-with-bob-1", "uniqueid", "3", "state", "INSTALLED"),
			"sm-abczz-with-bob-2-4", vicitest.Msg("name", "sm-abczz-with-bob-2", "uniqueid", "4", "state", "INSTALLED"),
		))))
	edited := strings.Replace(string(orig), "destination_port = 6667", "destination_port = 6669", 1)
	if edited == string(orig) {
		t.Fatal("alice.toml has no destination_port = 6667 to edit")
	}
	if err := os.WriteFile(alice, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := step("plan-changed", ExitOK, "plan", "-f", alice)
	changed("plan-changed", doc, true)
	if n := srv.Count("terminate"); n != 0 {
		t.Fatalf("plan sent %d terminate", n)
	}
	if td, _ := doc["teardown"].([]any); len(td) != 1 {
		t.Fatalf("plan-changed: teardown %v, want the one CHILD_SA of the edited filter", doc["teardown"])
	}
	changed("apply-changed", step("apply-changed", ExitOK, "apply", "-f", alice), true)
	srv.SetSAs()

	// charon refuses the next edit: the document says what was rolled back.
	srv.Handle("load-conn", func(*vicitest.Request) *govici.Message { return vicitest.Failed("unknown option 'bogus'") })
	if err := os.WriteFile(alice, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	doc = step("apply-rejected", ExitFailure, "apply", "-f", alice)
	changed("apply-rejected", doc, false)
	if e, _ := doc["error"].(map[string]any); e == nil || e["kind"] != "rejected" {
		t.Fatalf("apply-rejected: error %v", doc["error"])
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[endpoint]\nname = \"x\"\nbogus = 1\n"), 0o600)
	step("plan-invalid", ExitFailure, "plan", "-f", bad)
	step("apply-usage", ExitUsage, "apply", "-f", alice)

	changed("unassign", step("unassign", ExitOK, "unassign"), true)
	changed("unassign-again", step("unassign-again", ExitOK, "unassign"), false)
}

func TestResultOutputRejectsUnknownFormat(t *testing.T) {
	code, out, errs := runCLI("plan", "-o", "yaml", "--socket", "/nonexistent.vici")
	if code != ExitUsage || out != "" || !strings.Contains(errs, `--output "yaml": use text or json`) {
		t.Fatalf("plan -o yaml: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// A conflict's JSON error lists every name charon has that swanmgr did not
// load, the message only the first ones.
func TestConflictJSONListsEveryName(t *testing.T) {
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("sm-peer-%d", i))
	}
	e := errorDocFor(&assign.ConflictError{Names: names})
	if e.Kind != "conflict" || len(e.Conflicts) != 25 || strings.Contains(e.Message, "sm-peer-24") {
		t.Fatalf("conflict doc: kind %q, %d names, message %q", e.Kind, len(e.Conflicts), e.Message)
	}
	b, _ := json.Marshal(errorDocFor(errors.New("other")))
	if strings.Contains(string(b), "conflicts") {
		t.Fatalf("a document of another error has conflicts: %s", b)
	}
}

// writes counts the writes made to it.
type writes struct {
	n int
	b strings.Builder
}

func (w *writes) Write(p []byte) (int, error) { w.n++; return w.b.Write(p) }

// A table goes out in one write (on a terminal or a pipe, a write per line
// was a system call per rule: 10,000 for an apply of 5,000 rules), its
// columns aligned and trailing blanks cut.
func TestTableOneWrite(t *testing.T) {
	var w writes
	tw := newTable(&w)
	for i := range 500 {
		tw.row("  = %s\t%s\t%s\n", fmt.Sprint("rule ", i), "unchanged", "")
	}
	tw.flush()
	if w.n != 1 {
		t.Fatalf("%d writes for a table of 500 rows", w.n)
	}
	lines := strings.Split(strings.TrimSuffix(w.b.String(), "\n"), "\n")
	if len(lines) != 500 || lines[0] != "  = rule 0    unchanged" || lines[499] != "  = rule 499  unchanged" {
		t.Fatalf("table:\n%s", w.b.String())
	}
}
