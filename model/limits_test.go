package model_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestParseRefusesPathologicalDepth(t *testing.T) {
	deepInline := "x = " + strings.Repeat("{a = ", 20000) + "1" + strings.Repeat("}", 20000) + "\n"
	cases := []struct {
		name, toml, want string
	}{
		// Each of these took gigabytes (or minutes) in the TOML decoder.
		{"dotted key of 16,000 parts", base + "a" + strings.Repeat(".a", 15999) + " = 1\n",
			"t.toml:23: a key or table name has more than 16 dotted parts"},
		{"dotted key of 100,000 parts", "a" + strings.Repeat(".a", 99999) + " = 1\n",
			"t.toml:1: a key or table name has more than 16 dotted parts"},
		{"table header of 16,000 parts", base + "[a" + strings.Repeat(".a", 15999) + "]\n",
			"t.toml:23: a key or table name has more than 16 dotted parts"},
		{"array of tables header", "\n[[a" + strings.Repeat(". a", 40) + "]]\n", "t.toml:2: a key or table name"},
		{"dotted key inside an inline table", "x = { y = 1, " + strings.Repeat("b.", 17) + "c = 2 }\n",
			"t.toml:1: a key or table name has more than 16"},
		{"inline tables nested 20,000 deep", base + deepInline,
			"t.toml:23: arrays and inline tables nest deeper than 16 levels"},
		{"arrays nested 20,000 deep", "a = " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
			"t.toml:1: arrays and inline tables nest deeper than 16 levels"},
		{"nesting over several lines", "a = [\n[\n" + strings.Repeat("[", 15) + "\n",
			"t.toml:3: arrays and inline tables nest deeper"},
		{"line counted through a multi-line string", "s = \"\"\"\n\n[[[[\n\"\"\"\n" + strings.Repeat("a.", 20) + "b = 1\n",
			"t.toml:5: a key or table name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = model.Parse("t.toml", []byte(c.toml)) })
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if got := err.Error(); !strings.HasPrefix(got, c.want) {
				t.Errorf("error\n\t%s\nwant it to start with\n\t%s", got, c.want)
			}
			// Refused before decoding: a copy of the text at most.
			if limit := uint64(4*len(c.toml)) + 1<<20; n > limit {
				t.Errorf("Parse allocated %d bytes for a %d-byte file, want at most %d", n, len(c.toml), limit)
			}
		})
	}
}

// TestParseDepthLimitsIgnoreStringsAndComments: brackets, braces and dots
// in strings, comments and values count for nothing.
func TestParseDepthLimitsIgnoreStringsAndComments(t *testing.T) {
	many := strings.Repeat("[{.", 40)
	edits := []string{
		`name = "FA"`, `name = "FA` + many + `"`,
		`name = "P"`, `name = '` + many + `' # ` + many,
		`action = "negotiate"`, `action = "negotiate" # ` + strings.Repeat("a.", 40),
		`security = "high"`, `security = "high"` + "\n" + `description = """` + many + "\n" + many + `\"""` + `"""`,
	}
	s := base
	for i := 0; i < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("%q not in base", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	s += `"` + strings.Repeat("q.", 30) + `" = 1` + "\n" + "f = [" + strings.Repeat("1.5, ", 40) + "2.5]\n"
	_, err := model.Parse("t.toml", []byte(s))
	if err == nil {
		t.Fatal("want the unknown keys reported")
	}
	for _, p := range err.(model.Problems) {
		if !strings.Contains(p.Msg, "unknown key") {
			t.Errorf("unexpected problem: %v", p)
		}
	}
	// Nesting and parts exactly at the limits are accepted.
	at := "x = " + strings.Repeat("[", model.MaxNesting) + strings.Repeat("]", model.MaxNesting) + "\n" +
		strings.Repeat("a.", model.MaxKeyParts-1) + "b = 1\n"
	_, err = model.Parse("t.toml", []byte(base+at))
	if err == nil || strings.Contains(err.Error(), "nest deeper") || strings.Contains(err.Error(), "dotted parts") {
		t.Errorf("at the limits: want only unknown keys, got %v", err)
	}
}

func TestParseRefusesLargeFile(t *testing.T) {
	data := []byte(base + "# " + strings.Repeat("x", model.MaxFileSize) + "\n")
	_, err := model.Parse("t.toml", data)
	want := fmt.Sprintf("t.toml: the policy file is %d bytes, larger than 16777216 (16 MiB)", len(data))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v", err)
	}

	// Load does not read a file over the limit: a sparse 8 GiB file costs
	// no 8 GiB.
	p := filepath.Join(t.TempDir(), "big.toml")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(8 << 30); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	var lerr error
	n := allocated(func() { _, lerr = model.Load(p) })
	if lerr == nil || !strings.Contains(lerr.Error(), "big.toml: the policy file is 8589934592 bytes, larger than 16777216 (16 MiB)") {
		t.Errorf("Load: got %v", lerr)
	}
	if n > 1<<20 {
		t.Errorf("Load allocated %d bytes", n)
	}
}

// bigPolicy writes a policy of n rules, each with its own filter list and
// filter action, written out in full the way an operator (or a generator)
// would.
func bigPolicy(n int) string {
	var b strings.Builder
	b.WriteString("# A generated gateway policy.\nassign = \"Gateway\"\n\n[endpoint]\nname = \"gw\"\naddresses = [\"10.0.0.1\"]\n\n")
	for i := range n {
		fmt.Fprintf(&b, "[[filter_list]]\nname = \"Branch %d\"\ndescription = \"traffic between the gateway and branch office %d\"\n"+
			"  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.%d.%d.0/24\"\n  protocol = \"tcp\"\n  destination_port = 443\n\n",
			i, i, 1+i/256, i%256)
		fmt.Fprintf(&b, "[[filter_action]]\nname = \"Encrypt %d\"\naction = \"negotiate\"\nsecurity = \"high\"\npfs = true\n\n", i)
	}
	b.WriteString("[[policy]]\nname = \"Gateway\"\n")
	for i := range n {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  name = \"Branch %d\"\n  filter_list = \"Branch %d\"\n  filter_action = \"Encrypt %d\"\n"+
			"  tunnel_endpoint = \"192.168.%d.%d\"\n  authentication = [ { method = \"psk\", secret_file = \"k.psk\" } ]\n",
			i, i, i, 1+i/250, 1+i%250)
	}
	return b.String()
}

// TestTenThousandRulesLoad: the size limit leaves room for far more than a
// real gateway's policy.
func TestTenThousandRulesLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a 10,000-rule policy")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.psk"), []byte(labKey), 0o600); err != nil {
		t.Fatal(err)
	}
	data := bigPolicy(10000)
	path := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 rules: %d bytes (limit %d)", len(data), model.MaxFileSize)
	if len(data)*3 > model.MaxFileSize {
		t.Errorf("a 10,000-rule policy (%d bytes) is within a factor 3 of the limit", len(data))
	}
	f, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := model.Validate(f, model.ValidateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Rules) != 10000 {
		t.Errorf("%d rules", len(a.Rules))
	}
}

// TestManyUnknownKeys: unknown keys cost time in proportion to their number
// (reporting them used to compare each with every other), and the list is
// bounded.
func TestManyUnknownKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d = 1\nt%d.x = 1\n", i, i) // t%d: an unknown table
	}
	b.WriteString("[bogus]\nx = 1\ny = 2\n")
	start := time.Now()
	_, err := model.Parse("t.toml", []byte(b.String()))
	d := time.Since(start)
	ps, ok := err.(model.Problems)
	if !ok {
		t.Fatalf("got %v", err)
	}
	if len(ps) != 101 || ps[0].Msg != "unknown key policy.rule.k0" || ps[100].Msg != "39901 more unknown or misspelt keys from here on are not listed" || ps[100].Line != 123 {
		t.Errorf("%d problems, first %v, last %v", len(ps), ps[0], ps[len(ps)-1])
	}
	// Quadratic, this took minutes; linear, about a second.
	if d > 20*time.Second {
		t.Errorf("40,000 unknown keys took %v", d)
	}
	t.Logf("40,000 unknown keys (%d bytes): %v", b.Len(), d)
}

// TestLoadRefusesFIFO: a FIFO named by mistake is refused, not waited on.
func TestLoadRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := model.Load(p)
	if err == nil || !strings.Contains(err.Error(), p+" is not a regular file") {
		t.Errorf("got %v", err)
	}
}
