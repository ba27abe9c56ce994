package importer_test

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/importer"
	"github.com/swanmgr/swanmgr/internal/linediff"
	"github.com/swanmgr/swanmgr/lab"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

var update = flag.Bool("update", false, "rewrite the expected output of importer/testdata/*.txt")

// Each testdata/*.txt holds a script, a separator line and what importing
// it gives: "----- toml -----" and the policy file (whose header repeats
// the notes), or "----- error -----" and the error. The script's first
// line may be "# swanmgr import netsh FLAGS" (or consec) with the command's flags
// (--address, --name, --policy, --legacy-algorithms, --certificate,
// --private-key). `go test ./importer -update` rewrites the expectations.
const (
	sepTOML  = "----- toml -----\n"
	sepError = "----- error -----\n"
)

type golden struct {
	script, want, kind string
	tool               string // netsh or consec
	opts               importer.Options
}

func readGolden(t testing.TB, path string) golden {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	var g golden
	for _, sep := range []string{sepTOML, sepError} {
		if i := strings.Index(s, sep); i >= 0 {
			g.script, g.want, g.kind = s[:i], s[i+len(sep):], sep
		}
	}
	if g.kind == "" {
		g.script, g.kind = s, sepTOML
	}
	first, _, _ := strings.Cut(g.script, "\n")
	g.tool = "netsh"
	if strings.HasPrefix(first, "# swanmgr import consec") {
		g.tool = "consec"
	}
	args := strings.Fields(strings.TrimPrefix(first, "# swanmgr import "+g.tool))
	for i := 0; i < len(args); i++ {
		val := func() string {
			i++
			if i >= len(args) {
				t.Fatalf("%s: flag %s needs a value", path, args[i-1])
			}
			return strings.ReplaceAll(args[i], "_", " ")
		}
		switch args[i] {
		case "--address":
			g.opts.Addresses = append(g.opts.Addresses, val())
		case "--name":
			g.opts.Name = val()
		case "--policy":
			g.opts.Policy = val()
		case "--legacy-algorithms":
			g.opts.LegacyAlgorithms = true
		case "--certificate":
			g.opts.Certificate = val()
		case "--private-key":
			g.opts.PrivateKey = val()
		case "--remote-access-interface":
			g.opts.RemoteAccessInterface = val()
		default:
			t.Fatalf("%s: unknown flag %q in the first line", path, args[i])
		}
	}
	return g
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			g := readGolden(t, path)
			name := filepath.Base(path)
			g.opts.KeyPrefix = "imported"
			imp := importer.Netsh
			if g.tool == "consec" {
				imp = importer.Consec
			}
			res, err := imp(name, []byte(g.script), g.opts)
			var got, kind string
			if err != nil {
				got, kind = err.Error()+"\n", sepError
			} else {
				text, err := res.TOML()
				if err != nil {
					t.Fatal(err)
				}
				got, kind = string(text), sepTOML
			}
			for _, k := range pskValues(t, name, g.script) {
				if strings.Contains(got, k) {
					t.Errorf("a preshared key of the script appears in the output or error:\n%s", got)
				}
			}
			if *update {
				if err := os.WriteFile(path, []byte(g.script+kind+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if kind != g.kind || got != g.want {
				t.Fatalf("%s: import differs (-want +got):\n%s", path, linediff.Diff(g.kind+g.want, kind+got))
			}
			if res != nil {
				mustValidate(t, res)
			}
		})
	}
}

// mustValidate writes the import with its key files (and, for
// certificate rules, a lab CA and host certificate) into a folder and
// checks that it validates and renders, as `swanmgr validate` does.
func mustValidate(t *testing.T, res *importer.Result) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range res.Keys {
		if err := os.WriteFile(filepath.Join(dir, k.File), []byte(k.Secret.Reveal()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if files := res.CertFiles(); len(files) > 0 {
		issued, err := lab.IssueCerts(dir, lab.CertOptions{Hosts: []lab.CertHost{{Name: "alice", Addr: netip.MustParseAddr(res.File.Endpoint.Addresses[0])}}})
		if err != nil {
			t.Fatal(err)
		}
		// The rule names the files by the names the golden file gave.
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Fatalf("certificate file %s: the golden file should name %s, %s, %s", f, filepath.Base(issued.CA), "alice.pem", "alice.key")
			}
		}
	}
	text, err := res.TOML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "imported.toml")
	a, _, err := model.ParseValidate(path, text, model.ValidateOptions{})
	if err != nil {
		t.Fatalf("the import does not validate:\n%v\n%s", err, text)
	}
	if _, err := render.Render(a, render.Options{Backend: render.Kernel}); err != nil {
		t.Fatalf("the import does not render: %v", err)
	}
}

// pskValues are the psk= values of a script (as the parser reads them:
// abbreviated tags and positional values too).
func pskValues(t testing.TB, name, script string) []string {
	keys, _ := pskAndOther(t, name, script)
	return keys
}

// pskAndOther also returns every other text of the parsed commands, where
// a key may rightly show up if the script wrote it there too.
func pskAndOther(t testing.TB, name, script string) ([]string, string) {
	cmds, err := importer.Parse(name, []byte(script))
	var perr *importer.Error
	if err != nil && !errors.As(err, &perr) {
		t.Fatal(err)
	}
	var out []string
	var other strings.Builder
	for _, c := range cmds {
		other.WriteString(c.Context + "\n" + c.Verb + "\n" + c.Object + "\n")
		pos := map[string]int{"rule": 9, "defaultrule": 5}[c.Object]
		if pos == 0 {
			for _, a := range c.Args {
				other.WriteString(a.Tag + "\n" + a.Value + "\n")
			}
			continue
		}
		n := 0
		for _, a := range c.Args {
			isPSK := len(a.Tag) >= 2 && strings.HasPrefix("psk", a.Tag) || len(a.Tag) >= 6 && strings.HasPrefix("auth1psk", a.Tag)
			if a.Tag == "" {
				isPSK = n == pos
				n++
			}
			if isPSK && len(a.Value) > 3 {
				out = append(out, a.Value)
			} else {
				other.WriteString(a.Tag + "\n" + a.Value + "\n")
			}
		}
	}
	return out, other.String()
}
