package model_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// FuzzLoad feeds arbitrary bytes to the loader, the validator and the
// renderer: whatever the policy file holds, swanmgr reports problems and
// never panics. (TestMain bounds the minimization of new inputs; see there
// why runs used to sit at 0 execs/sec.) Run it with `go test ./model -fuzz=FuzzLoad`; crashers are
// kept in testdata/fuzz/FuzzLoad as regression cases.
func FuzzLoad(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "*", "*.toml"))
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base))
	f.Add([]byte(aliceTypo))
	f.Add([]byte(strings.ReplaceAll(base, `secret_file = "k.psk"`, `secret = "`+labKey+`"`)))
	f.Add([]byte(base + "[[policy.rule]]\nfilter_list = \"FL\"\nfilter_action = \"FA\"\ntunnel_endpoint = \"10.0.0.9\"\nauthentication = [ { method = \"psk\", secret_env = \"K\" } ]\n"))
	// Depth just over and at the limits: the pre-scan must refuse the
	// first before the decoder sees it, and the second decodes quickly.
	f.Add([]byte("a" + strings.Repeat(".a", model.MaxKeyParts) + " = 1\n"))
	f.Add([]byte("x = " + strings.Repeat("{a = ", model.MaxNesting) + "1" + strings.Repeat("}", model.MaxNesting) + "\n"))
	f.Add([]byte("x = " + strings.Repeat("[", model.MaxNesting-1) + "'[{.'" + strings.Repeat("]", model.MaxNesting-1) + " # [[[\n"))

	dir := f.TempDir()
	for _, n := range []string{"k.psk", "alice-bob.psk", "alice-eve.psk"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(labKey), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	path := filepath.Join(dir, "policy.toml")
	env := func(k string) (string, bool) {
		if k == "K" {
			return labKey, true
		}
		return "", false
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		// The lab key is a secret wherever swanmgr reads it as one: from
		// the files, the environment and inline secrets. Written anywhere
		// else (a rule name, say), it may rightly show up in messages.
		leakCheck := !bytes.Contains(secretAssignRe.ReplaceAll(data, nil), []byte(labKey))
		checkProblems := func(t *testing.T, err error) {
			t.Helper()
			if _, ok := err.(model.Problems); !ok {
				t.Fatalf("error is %T, not model.Problems: %v", err, err)
			}
			if leakCheck && strings.Contains(err.Error(), labKey) {
				t.Fatalf("a problem shows the secret: %v", err)
			}
		}
		file, err := model.Parse(path, data)
		if err != nil {
			checkProblems(t, err)
			return
		}
		a, warns, err := model.Validate(file, model.ValidateOptions{InsecureSecrets: true, LookupEnv: env})
		for _, w := range warns {
			if leakCheck && strings.Contains(w.Error(), labKey) {
				t.Fatalf("a warning shows the secret: %v", w)
			}
		}
		if err != nil {
			checkProblems(t, err)
			return
		}
		for _, b := range []render.Backend{render.Kernel, render.LibIPsec} {
			res, err := render.Render(a, render.Options{Backend: b})
			if err != nil {
				checkProblems(t, err)
				continue
			}
			var out bytes.Buffer
			if err := res.WriteSwanctl(&out, render.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if leakCheck && strings.Contains(out.String(), labKey) {
				t.Fatalf("the secret shows in the redacted output")
			}
			if err := res.WriteSwanctl(io.Discard, render.WriteOptions{ShowSecrets: true}); err != nil {
				t.Fatal(err)
			}
			for _, c := range res.Conns {
				if _, err := render.ConnMessage(c); err != nil {
					t.Fatalf("ConnMessage(%s): %v", c.Name, err)
				}
				_, _, _ = c.Hash(), c.IKEHash(), c.ChildHashes()
			}
		}
	})
}

// secretAssignRe matches an inline secret assignment (basic string).
var secretAssignRe = regexp.MustCompile(`secret\s*=\s*"[^"\n]*"`)
