package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/lab"
)

// TestSwanctlAcceptsRenderedConfig loads what the renderer writes for
// every example and every golden input of render/testdata into a real
// charon with `swanctl --load-all --file`, for both backends: proof that
// charon takes every connection and secret swanmgr writes.
func TestSwanctlAcceptsRenderedConfig(t *testing.T) {
	t.Parallel()
	labs := map[string]*testLab{
		"kernel":   newLab(t, lab.Kernel, "alice"),
		"libipsec": newLab(t, lab.Libipsec, "alice"),
	}
	type cfg struct{ name, backend, text string }
	var cfgs []cfg

	// The examples, rendered for both backends by the command line.
	ex := labs["kernel"].examples
	files, _ := filepath.Glob(filepath.Join(ex, "*", "*.toml"))
	if len(files) < 5 {
		t.Fatalf("found only %d example policies in %s", len(files), ex)
	}
	for _, f := range files {
		for _, b := range []string{"kernel", "libipsec"} {
			r := run("swanmgr", "render", "-f", f, "--ipsec-backend", b, "--show-secrets")
			if r.code != 0 {
				t.Fatalf("render %s (%s): %s", f, b, r)
			}
			rel, _ := filepath.Rel(ex, f)
			cfgs = append(cfgs, cfg{"examples/" + rel, b, r.stdout})
		}
	}

	// The golden files' expected output (which TestGolden keeps equal to
	// what the renderer writes).
	golden, _ := filepath.Glob(filepath.Join("..", "render", "testdata", "*.txt"))
	if len(golden) == 0 {
		t.Fatal("no golden files in render/testdata")
	}
	testdata, _ := filepath.Abs(filepath.Join("..", "render", "testdata"))
	backendRe := regexp.MustCompile(`(?m)^# backend: (\S+)`)
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		in, want, ok := strings.Cut(string(b), "\n----------\n")
		if !ok || strings.HasPrefix(want, "error: ") {
			continue
		}
		backend := "kernel"
		if m := backendRe.FindStringSubmatch(in); m != nil {
			backend = m[1]
		}
		cfgs = append(cfgs, cfg{"render/testdata/" + filepath.Base(g), backend, strings.ReplaceAll(want, "$TESTDATA", testdata)})
	}

	// swanctl also loads credentials from folders beside the file.
	dir := t.TempDir()
	for _, sub := range []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	loadedRe := regexp.MustCompile(`successfully loaded (\d+) connections`)
	for i, c := range cfgs {
		t.Run(c.name+"/"+c.backend, func(t *testing.T) {
			l := labs[c.backend]
			if l == nil {
				t.Fatalf("unknown backend %q", c.backend)
			}
			conf := filepath.Join(dir, strconv.Itoa(i)+".conf")
			if err := os.WriteFile(conf, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := l.Host("alice").Swanctl(ctx, "--load-all", "--file", conf).CombinedOutput()
			if err != nil || strings.Contains(string(out), "failed") {
				t.Fatalf("swanctl --load-all --file rejected the rendered %s config: %v\n%s\n--- config ---\n%s", c.backend, err, out, c.text)
			}
			want := strings.Count(c.text, "\n    sm-")
			m := loadedRe.FindStringSubmatch(string(out))
			if m == nil || m[1] != strconv.Itoa(want) {
				t.Fatalf("swanctl loaded %v connections, the config has %d:\n%s", m, want, out)
			}
			if secrets := strings.Count(c.text, "\n    ike-"); secrets > 0 && !strings.Contains(string(out), "loaded ike secret") {
				t.Fatalf("swanctl loaded no IKE secret of %d:\n%s", secrets, out)
			}
		})
	}
}
