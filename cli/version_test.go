package cli

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, errs := runCLI("version")
	if code != ExitOK || errs != "" {
		t.Fatalf("version: exit %d, stderr %q", code, errs)
	}
	// A test binary carries no VCS stamp and no module list; the shape
	// is checked here, the content below.
	for _, re := range []string{`(?m)^swanmgr \S+$`, `(?m)^commit  \S+`, `(?m)^go      go1\.\d+`, `(?m)^govici  \S+$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("version output does not match %s:\n%s", re, out)
		}
	}
	code, flagOut, _ := runCLI("--version")
	if code != ExitOK || flagOut != out {
		t.Errorf("--version: exit %d, output\n%s\nwant the version command's\n%s", code, flagOut, out)
	}
	if code, _, _ := runCLI("version", "extra"); code != ExitUsage {
		t.Errorf("version extra: exit %d, want %d", code, ExitUsage)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/swanmgr/swanmgr", Version: "v0.0.0-20261202014507-5c5817dff936+dirty"},
		Deps:      []*debug.Module{{Path: "github.com/urfave/cli/v2", Version: "v2.27.7"}, {Path: "github.com/strongswan/govici", Version: "v0.8.1"}},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "5c5817dff9365ad8a30a50ee631ab5b4ac036e0d"},
			{Key: "vcs.time", Value: "2026-12-02T01:45:07Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	var b strings.Builder
	fromBuildInfo(info, "").write(&b)
	want := "swanmgr v0.0.0-20261202014507-5c5817dff936+dirty\n" +
		"commit  5c5817dff9365ad8a30a50ee631ab5b4ac036e0d (2026-12-02T01:45:07Z, with uncommitted changes)\n" +
		"go      go1.26.8\n" +
		"govici  v0.8.1\n"
	if b.String() != want {
		t.Errorf("got\n%swant\n%s", b.String(), want)
	}
	b.Reset()
	fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "1.2.0").write(&b)
	want = "swanmgr 1.2.0\ncommit  unknown (built without version control information)\ngo      go1.26.8\ngovici  unknown\n"
	if b.String() != want {
		t.Errorf("release build without VCS: got\n%swant\n%s", b.String(), want)
	}
}

func TestHelpCommand(t *testing.T) {
	code, out, errs := runCLI("help", "validate")
	if code != ExitOK || !strings.Contains(out, "swanmgr validate - check a policy file") || !strings.Contains(out, "--file value, -f value") {
		t.Fatalf("help validate: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI("lab", "help", "up")
	if code != ExitOK || !strings.Contains(out, "swanmgr lab up - ") {
		t.Errorf("lab help up: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI("help", "bogus"); code != ExitUsage || !strings.Contains(errs, "bogus") {
		t.Errorf("help bogus: exit %d, stderr %q", code, errs)
	}
}

func TestUsageErrorsNameTheProgramOnce(t *testing.T) {
	code, _, errs := runCLI("--bogus")
	if code != ExitUsage || errs != "swanmgr: flag provided but not defined: -bogus (see swanmgr --help)\n" {
		t.Errorf("--bogus: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI("valdate")
	if code != ExitUsage || errs != "swanmgr: unknown command \"valdate\" (did you mean \"validate\"?) (see swanmgr --help)\n" {
		t.Errorf("valdate: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI("zzzzzzzz")
	if code != ExitUsage || errs != "swanmgr: unknown command \"zzzzzzzz\" (see swanmgr --help)\n" {
		t.Errorf("zzzzzzzz: exit %d, stderr %q", code, errs)
	}
	if code, out, _ := runCLI(); code != ExitOK || !strings.Contains(out, "COMMANDS:") {
		t.Errorf("no command: exit %d, want the help\n%s", code, out)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runCLI("completion", sh)
		if code != ExitOK || !strings.Contains(out, "swanmgr") || len(out) < 200 {
			t.Errorf("completion %s: exit %d\n%s%s", sh, code, out, errs)
		}
	}
	if code, _, _ := runCLI("completion", "tcsh"); code != ExitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, ExitUsage)
	}
}

// TestBashCompletionScript runs the bash script against a built swanmgr:
// urfave/cli's completion reads os.Args, so it cannot run in-process.
func TestBashCompletionScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds swanmgr")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "swanmgr")
	if out, err := exec.Command(goTool, "build", "-o", bin, "../cmd/swanmgr").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script, err := exec.Command(bin, "completion", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		prog := string(script) + "\nCOMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _swanmgr_complete; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, append([]string{"-c", prog, "bash", bin}, words...)...).Output()
		if err != nil {
			t.Fatalf("bash: %v", err)
		}
		return strings.Fields(string(out))
	}
	var visible []string
	for _, c := range newApp(io.Discard, io.Discard).Commands {
		if !c.Hidden {
			visible = append(visible, c.Name)
		}
	}
	got := complete("")
	for _, name := range visible {
		if !slices.Contains(got, name) {
			t.Errorf("completing the first word: %s missing from %v", name, got)
		}
	}
	if got := complete("va"); !slices.Equal(got, []string{"validate"}) {
		t.Errorf("completing va: %v", got)
	}
	if got := complete("validate", "--f"); !slices.Contains(got, "--file") {
		t.Errorf("completing validate --f: %v", got)
	}
	if got := complete("lab", ""); !slices.Contains(got, "up") || !slices.Contains(got, "down") {
		t.Errorf("completing lab: %v", got)
	}
}

// TestManNamesEveryCommand: the man page is made from the command
// definitions, so it covers every command and subcommand, with its usage.
func TestManNamesEveryCommand(t *testing.T) {
	code, man, errs := runCLI("man")
	if code != ExitOK || !strings.HasPrefix(man, ".nh\n.TH swanmgr 8") {
		t.Fatalf("man: exit %d, stderr %q\n%.200s", code, errs, man)
	}
	for _, c := range newApp(io.Discard, io.Discard).Commands {
		if c.Hidden {
			continue
		}
		if !strings.Contains(man, "\n.SH "+c.Name+"\n") {
			t.Errorf("the man page has no section for %s", c.Name)
		}
		if first, _, _ := strings.Cut(c.Usage, "\n"); !strings.Contains(man, first) {
			t.Errorf("the man page lacks %s's usage %q", c.Name, first)
		}
		for _, sub := range c.Subcommands {
			if !sub.Hidden && !strings.Contains(man, "\n.SS "+sub.Name+"\n") {
				t.Errorf("the man page has no section for %s %s", c.Name, sub.Name)
			}
		}
	}
}

// TestValidateReportsUnknownKeysWithTheRest: `swanmgr validate` lists
// every problem, unknown keys included.
func TestValidateReportsUnknownKeysWithTheRest(t *testing.T) {
	dir := example(t, "alice-bob")
	alice := filepath.Join(dir, "alice.toml")
	b, err := os.ReadFile(alice)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `security = "high"`, `security = "cusom"`, 1)
	s = strings.Replace(s, `pfs = true`, `pfs = true`+"\ncolour = \"blue\"", 1)
	s = strings.Replace(s, `destination = "172.31.67.244"`, `destination = "172.31.67.500"`, 1)
	if err := os.WriteFile(alice, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("validate", "-f", alice)
	for _, want := range []string{
		`destination "172.31.67.500" is not an address`,
		`security "cusom" is not "high", "medium" or "custom" (did you mean "custom"?)`,
		`unknown key filter_action.colour`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if code != ExitFailure || strings.Contains(errs, "is a DNS name") || strings.Contains(errs, "both this computer") {
		t.Errorf("exit %d, stderr:\n%s", code, errs)
	}
}
