package render_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/swanmgr/swanmgr/internal/linediff"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

var update = flag.Bool("update", false, "rewrite the expected output of render/testdata/*.txt")

// separator splits a golden file into the policy and what it renders to.
const separator = "----------"

// golden is one render/testdata/*.txt file. See testdata/README.md.
type golden struct {
	path    string
	input   string // everything before the separator
	want    string // everything after it
	backend render.Backend
	policy  string // the policy file: the golden itself, or "# file:"
	data    []byte
}

func readGolden(t *testing.T, path string) golden {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, want, ok := strings.Cut(string(b), "\n"+separator+"\n")
	if !ok {
		t.Fatalf("%s: no %q line between the policy and the expected output", path, separator)
	}
	g := golden{path: path, input: in + "\n", want: want, backend: render.Kernel, policy: path, data: []byte(in + "\n")}
	for _, line := range strings.Split(in, "\n") {
		key, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), ": ")
		if !strings.HasPrefix(line, "# ") || !ok {
			continue
		}
		switch key {
		case "backend":
			if g.backend, err = render.ParseBackend(val); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		case "file":
			// The policy is another file (an example), named relative
			// to the golden file.
			g.policy = filepath.Join(filepath.Dir(path), val)
			if g.data, err = os.ReadFile(g.policy); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g
}

// render loads, validates and renders the golden's policy: the swanctl.conf
// text (with secrets), or "error: ..." lines.
func (g golden) render(t *testing.T) (string, *render.Result) {
	t.Helper()
	f, err := model.Parse(g.policy, g.data)
	if err != nil {
		return errorLines(err), nil
	}
	// File modes are tested in model; git does not keep them.
	a, _, err := model.Validate(f, model.ValidateOptions{InsecureSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		return errorLines(err), nil
	}
	res, err := render.Render(a, render.Options{Backend: g.backend})
	if err != nil {
		return errorLines(err), nil
	}
	var b bytes.Buffer
	if err := res.WriteSwanctl(&b, render.WriteOptions{ShowSecrets: true}); err != nil {
		t.Fatal(err)
	}
	// Certificate paths are absolute: keep the goldens machine-independent.
	abs, err := filepath.Abs(filepath.Dir(g.path))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), abs, "$TESTDATA"), res
}

func errorLines(err error) string {
	var ps model.Problems
	if !errors.As(err, &ps) {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "error: %s\n", p.Error())
	}
	return b.String()
}

// TestGolden renders every render/testdata/*.txt policy and compares the
// result with the expected swanctl.conf text, or checks that each
// expected "error: " line is part of the error. `go test ./render -update`
// rewrites the expectations.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			g := readGolden(t, path)
			got, res := g.render(t)
			if *update {
				if err := os.WriteFile(path, []byte(g.input+separator+"\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.HasPrefix(g.want, "error: ") {
				if res != nil {
					t.Fatalf("want an error, got output:\n%s", got)
				}
				for _, w := range strings.Split(strings.TrimSpace(g.want), "\n") {
					if !strings.Contains(got, strings.TrimPrefix(w, "error: ")) {
						t.Errorf("error lacks %q; got:\n%s", w, got)
					}
				}
				return
			}
			if got != g.want {
				t.Errorf("%s: rendering differs (-want +got):\n%s", path, linediff.Diff(g.want, got))
			}
			if res != nil {
				checkRedacted(t, res)
				checkMessages(t, res)
			}
		})
	}
}

// checkRedacted renders without ShowSecrets: no secret may appear.
func checkRedacted(t *testing.T, res *render.Result) {
	t.Helper()
	var b bytes.Buffer
	if err := res.WriteSwanctl(&b, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Secrets {
		if v := s.Data.Reveal(); strings.Contains(b.String(), v) {
			t.Errorf("secret %s shows in the redacted output", s.Name)
		}
		if !strings.Contains(b.String(), render.SecretPlaceholder) {
			t.Errorf("no placeholder in the redacted output")
		}
		if got := fmt.Sprintf("%v %+v %#v", s, s, res.Secrets); strings.Contains(got, s.Data.Reveal()) {
			t.Errorf("fmt shows secret %s", s.Name)
		}
	}
}

// checkMessages builds every load-conn message and compares it with the
// IR the text was written from: same keys in the same order, list keys
// stay lists, subsections stay sections.
func checkMessages(t *testing.T, res *render.Result) {
	t.Helper()
	for _, c := range res.Conns {
		m, err := render.ConnMessage(c)
		if err != nil {
			t.Errorf("ConnMessage(%s): %v", c.Name, err)
			continue
		}
		compareMessage(t, c.Name, c.Body, m)
	}
}

func compareMessage(t *testing.T, where string, s *render.Section, m *govici.Message) {
	t.Helper()
	var keys []string
	for _, it := range s.All() {
		keys = append(keys, it.Key)
		v := m.Get(it.Key)
		switch {
		case it.Sec != nil:
			sub, ok := v.(*govici.Message)
			if !ok {
				t.Errorf("%s.%s: %T in the message, want a section", where, it.Key, v)
				continue
			}
			compareMessage(t, where+"."+it.Key, it.Sec, sub)
		case it.IsList || len(it.Files()) > 0:
			if _, ok := v.([]string); !ok {
				t.Errorf("%s.%s: %T in the message, want a list", where, it.Key, v)
			}
		default:
			if v != it.Value {
				t.Errorf("%s.%s: %v in the message, want %q", where, it.Key, v, it.Value)
			}
		}
	}
	if got := m.Keys(); strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Errorf("%s: message keys %v, want %v", where, got, keys)
	}
}
