package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
)

// Problems that used to hide others, or drag false ones along.
var problemCases = []vcase{
	{name: "invalid destination draws one error, no follow-ups",
		edit: []string{`destination = "10.0.0.2"`, `destination = "172.20.0.500"`},
		errs: []string{`t.toml:9: filter_list "FL" filter 1: destination "172.20.0.500" is not an address, subnet, DNS name, "me" or "any"`}, nerrs: 1},
	{name: "invalid source draws one error, no follow-ups",
		edit: []string{`source = "me"`, `source = "10.0.0.1.7"`, `destination = "10.0.0.2"`, `destination = "me"`},
		errs: []string{`t.toml:8: filter_list "FL" filter 1: source "10.0.0.1.7" is not an address`}, nerrs: 1},
	{name: "security typo suggests the keyword", edit: []string{`security = "high"`, `security = "cusom"`},
		errs: []string{`t.toml:15: filter_action "FA": security "cusom" is not "high", "medium" or "custom" (did you mean "custom"?)`}, nerrs: 1},
}

func TestProblemsWithoutFollowUps(t *testing.T) {
	for _, c := range problemCases {
		t.Run(c.name, func(t *testing.T) {
			errs, warns := c.run(t)
			if len(errs) != c.nerrs {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), c.nerrs, strings.Join(errs, "\n"))
			}
			expect(t, "error", c.errs, errs)
			if len(warns) > 0 {
				t.Errorf("want no warnings, got:\n%s", strings.Join(warns, "\n"))
			}
		})
	}
}

// TestParseValidateReportsEverything: an unknown key does not hide the
// file's other problems (the docs promise every problem at once).
func TestParseValidateReportsEverything(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte(labKey), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "t.toml")
	s := strings.NewReplacer(
		`addresses = ["10.0.0.1"]`, `adresses = ["10.0.0.1"]`,
		`security = "high"`, `security = "cusom"`,
		`  filter_action = "FA"`, `  filter_action = "FA"`+"\n  colour = \"blue\"",
	).Replace(base)
	a, _, err := model.ParseValidate(path, []byte(s), model.ValidateOptions{})
	if err == nil || a != nil {
		t.Fatalf("ParseValidate accepted it")
	}
	ps, ok := err.(model.Problems)
	if !ok {
		t.Fatalf("error is %T", err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, strings.TrimPrefix(p.Error(), dir+"/"))
	}
	want := []string{
		"t.toml:4: unknown key endpoint.adresses (did you mean addresses?)",
		`t.toml:2: endpoint: addresses is required: list this computer's IP addresses ("My IP address")`,
		`t.toml:15: filter_action "FA": security "cusom" is not "high", "medium" or "custom" (did you mean "custom"?)`,
		"t.toml:22: unknown key policy.rule.colour",
	}
	expect(t, "problem", want, got)
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].Line < ps[i-1].Line {
			t.Errorf("problems not in line order:\n%s", strings.Join(got, "\n"))
		}
	}

	// A syntax error still stops everything: nothing after it is known.
	_, _, err = model.ParseValidate(path, []byte(strings.Replace(base, `security = "high"`, `security = high`, 1)), model.ValidateOptions{})
	if ps, ok := err.(model.Problems); !ok || len(ps) != 1 {
		t.Errorf("syntax error: got %v", err)
	}
	// A valid file passes.
	if a, _, err := model.ParseValidate(path, []byte(base), model.ValidateOptions{}); err != nil || a == nil {
		t.Errorf("base: %v", err)
	}
}

// TestSecretFileControl: a preshared key file someone else could replace
// or rewrite is refused, with the reason, like one others can read.
func TestSecretFileControl(t *testing.T) {
	validate := func(t *testing.T, dir string, o model.ValidateOptions) error {
		t.Helper()
		p := filepath.Join(dir, "t.toml")
		_, _, err := model.ParseValidate(p, []byte(base), o)
		return err
	}
	writeKey := func(t *testing.T, dir string) string {
		t.Helper()
		k := filepath.Join(dir, "k.psk")
		if err := os.WriteFile(k, []byte(labKey), 0o600); err != nil {
			t.Fatal(err)
		}
		return k
	}
	mkdir := func(t *testing.T, parent string, mode os.FileMode) string {
		t.Helper()
		d := filepath.Join(parent, "d")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return d
	}

	t.Run("world-writable folder", func(t *testing.T) {
		d := mkdir(t, t.TempDir(), 0o777)
		writeKey(t, d)
		err := validate(t, d, model.ValidateOptions{})
		want := `policy "P" rule "R" authentication 1: secret_file ` + d + `/k.psk is in ` + d + `, which every user may write to (mode 0777): another user could put their own file in its place`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %s", err, want)
		}
		if err := validate(t, d, model.ValidateOptions{InsecureSecrets: true}); err != nil {
			t.Errorf("--insecure-secrets: %v", err)
		}
	})
	t.Run("world-writable folder further up", func(t *testing.T) {
		up := mkdir(t, t.TempDir(), 0o777)
		d := mkdir(t, up, 0o700)
		writeKey(t, d)
		err := validate(t, d, model.ValidateOptions{})
		if err == nil || !strings.Contains(err.Error(), "is in "+up+", which every user may write to") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("link to a file in a world-writable folder", func(t *testing.T) {
		open := mkdir(t, t.TempDir(), 0o777)
		k := writeKey(t, open)
		d := t.TempDir()
		if err := os.Symlink(k, filepath.Join(d, "k.psk")); err != nil {
			t.Fatal(err)
		}
		err := validate(t, d, model.ValidateOptions{})
		if err == nil || !strings.Contains(err.Error(), "is in "+open+", which every user may write to") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("sticky world-writable folder is fine", func(t *testing.T) {
		d := mkdir(t, t.TempDir(), 0o777|os.ModeSticky)
		writeKey(t, d)
		if err := validate(t, d, model.ValidateOptions{}); err != nil {
			t.Errorf("got %v", err)
		}
	})
	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("giving a file to another user needs root")
		}
		d := t.TempDir()
		k := writeKey(t, d)
		if err := os.Chown(k, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		err := validate(t, d, model.ValidateOptions{})
		want := "secret_file " + k + " belongs to user 65534, not to you (0) or root: that user can change the key; run chown 0 " + k
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %s", err, want)
		}
	})
}
