package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/trace"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // invalid input, or the operation failed
	ExitUsage   = 2 // bad command line
	ExitChanges = 3 // plan --exit-code: changes are pending
)

// exitError carries an exit code out of a command. An empty message
// means the command already said what went wrong.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// Run runs swanmgr with args (args[0] is the program name) and returns the
// exit code. All output goes to stdout and stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// runWith is Run with the app's Metadata set (tests pass a fake firewall,
// see firewallKey).
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, meta map[string]any) int {
	app := newApp(stdout, stderr)
	app.Metadata = meta
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	code := ExitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isUsage(err) {
		code = ExitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "swanmgr: %s\n", strings.ReplaceAll(msg, "\n", "\nswanmgr: "))
	}
	return code
}

// isUsage recognises urfave/cli's own command-line errors.
func isUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "Required flag", "No help topic"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	return &ucli.App{
		Name:  "swanmgr",
		Usage: "manage strongSwan IPsec with the Windows IPsec policy model",
		Description: "swanmgr loads an IPsec policy file (endpoint, filter lists, filter actions,\n" +
			"policies of rules) and assigns it to a running charon over VICI.\n" +
			"Documentation: docs/policy-format.md and docs/commands.md.",
		Writer:    stdout,
		ErrWriter: stderr,
		// `swanmgr help COMMAND` and --generate-bash-completion, which the
		// scripts of `swanmgr completion` call.
		HideHelpCommand:      false,
		EnableBashCompletion: true,
		ExitErrHandler:       func(*ucli.Context, error) {},
		OnUsageError: func(c *ucli.Context, err error, _ bool) error {
			return &exitError{code: ExitUsage, err: fmt.Errorf("%w (see %s --help)", err, commandPath(c))}
		},
		Flags:    []ucli.Flag{versionFlag},
		Action:   appAction,
		Commands: commands(),
	}
}

func commands() []*ucli.Command {
	return []*ucli.Command{
		validateCommand(),
		renderCommand(),
		planCommand(),
		applyCommand(),
		unassignCommand(),
		confirmCommand(),
		revertCommand(),
		confirmWatchCommand(),
		agentCommand(),
		initiateCommand(),
		terminateCommand(),
		labCommand(),
		statusCommand(),
		metricsCommand(),
		mirrorCommand(),
		checkCommand(),
		importCommand(),
		versionCommand(),
		completionCommand(),
		manCommand(),
	}
}

var (
	fileFlag = &ucli.StringFlag{
		Name:    "file",
		Aliases: []string{"f"},
		Usage:   "policy file, or a folder of *.toml files merged into one policy (as swanctl's conf.d)",
		Value:   model.DefaultPath,
		EnvVars: []string{"SWANMGR_POLICY"},
	}
	insecureFlag = &ucli.BoolFlag{
		Name:  "insecure-secrets",
		Usage: "accept secret and key files that group or others can read, that belong to another user or lie in a folder every user may write to",
	}
	refreshFlag = &ucli.BoolFlag{
		Name:  "refresh",
		Usage: fmt.Sprintf("compare charon's copy of every connection swanmgr loaded with what it loaded, however many there are (without it, up to %d; above, the connections a change loads, the others by name)", assign.CompareAllUpTo),
	}
	backendFlag = &ucli.StringFlag{
		Name:    "ipsec-backend",
		Usage:   "charon's IPsec backend: kernel (XFRM) or libipsec (userspace, tunnel mode only)",
		Value:   string(render.Kernel),
		EnvVars: []string{"SWANMGR_IPSEC_BACKEND"},
	}
)

// loaded is a policy file read, validated and rendered.
type loaded struct {
	assigned *model.Assigned
	result   *render.Result
	warnings []model.Problem
}

// loadPolicy reads, validates and renders the -f file. Warnings are
// printed to stderr; problems come back as one error.
func loadPolicy(c *ucli.Context) (*loaded, error) {
	backend, path, data, err := readPolicy(c)
	if err != nil {
		return nil, err
	}
	return loadPolicyData(c, backend, path, data, validateOptions(c))
}

// validateOptions are the validation settings of the command line.
func validateOptions(c *ucli.Context) model.ValidateOptions {
	return validateOptionsFor(c.Bool(insecureFlag.Name))
}

func validateOptionsFor(insecure bool) model.ValidateOptions {
	return model.ValidateOptions{InsecureSecrets: insecure}
}

// readPolicy reads the -f file and the --ipsec-backend flag.
func readPolicy(c *ucli.Context) (render.Backend, string, []byte, error) {
	backend, err := render.ParseBackend(c.String(backendFlag.Name))
	if err != nil {
		return "", "", nil, usageErrorf("%v", err)
	}
	path := c.String(fileFlag.Name)
	data, err := model.ReadFile(path)
	if err != nil {
		return "", "", nil, err
	}
	return backend, path, data, nil
}

// loadPolicyData is loadPolicy on a policy file already read.
func loadPolicyData(c *ucli.Context, backend render.Backend, path string, data []byte, vo model.ValidateOptions) (*loaded, error) {
	return loadPolicyDataTo(c.App.ErrWriter, backend, path, data, vo)
}

// loadPolicyDataTo is loadPolicyData writing warnings to w.
func loadPolicyDataTo(w io.Writer, backend render.Backend, path string, data []byte, vo model.ValidateOptions) (*loaded, error) {
	return loadPolicyDataWith(w, render.Options{Backend: backend}, nil, nil, path, data, vo)
}

// loadPolicyDataWith is loadPolicyDataTo with render's options, and the
// Prior prior gives (when not nil: read while the policy is); parsed,
// when not nil, is called with vo.Reuse once the policy is parsed, which
// is then let go of here (the caller keeps what it needs of it: at 5,000
// rules, its decoded pieces or files are some megabytes the render need
// not be beside).
func loadPolicyDataWith(w io.Writer, ro render.Options, prior func() *render.Prior, parsed func(*model.Reuse), path string, data []byte, vo model.ValidateOptions) (*loaded, error) {
	r := trace.StartRegion(context.Background(), "parseValidate")
	a, warns, err := model.ParseValidate(path, data, vo)
	if vo.Reuse != nil {
		taken, decoded := vo.Reuse.Counts()
		trace.Logf(context.Background(), "parse", "%d pieces or files as decoded before, %d decoded", taken, decoded)
	}
	if parsed != nil {
		parsed(vo.Reuse)
		vo.Reuse = nil
	}
	r.End()
	for _, p := range warns {
		fmt.Fprintln(w, p.Error())
	}
	if err != nil {
		return nil, err
	}
	if prior != nil {
		ro.Prior = prior()
	}
	r = trace.StartRegion(context.Background(), "render")
	res, err := render.Render(a, ro)
	if err == nil && ro.Prior != nil {
		trace.Logf(context.Background(), "render", "%d of %d connections as rendered before", ro.Prior.Reused(), len(res.Conns))
	}
	r.End()
	if err != nil {
		return nil, err
	}
	for _, p := range res.Warnings {
		fmt.Fprintln(w, p.Error())
	}
	warns = append(warns, res.Warnings...)
	return &loaded{assigned: a, result: res, warnings: warns}, nil
}

func validateCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "validate",
		Usage:     "check a policy file; exit 0 valid (warnings on stderr), 1 invalid, 2 usage error",
		ArgsUsage: " ",
		Flags:     []ucli.Flag{fileFlag, insecureFlag, backendFlag},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("validate takes no arguments (use -f FILE)")
			}
			l, err := loadPolicy(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s: valid: policy %q, %s, %s, %s (%s backend)\n",
				c.String(fileFlag.Name), l.assigned.Policy.Name, plural(len(l.assigned.Rules), "rule"), plural(len(l.result.Conns), "connection"), plural(len(l.result.Secrets), "secret"), l.result.Backend)
			return nil
		},
	}
}

func renderCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "render",
		Usage:     "print the swanctl.conf that the policy becomes (secrets redacted unless --show-secrets)",
		ArgsUsage: " ",
		Flags: []ucli.Flag{fileFlag, insecureFlag, backendFlag,
			&ucli.BoolFlag{Name: "show-secrets", Usage: "write preshared keys as they are (the text then holds secrets)"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("render takes no arguments (use -f FILE)")
			}
			l, err := loadPolicy(c)
			if err != nil {
				return err
			}
			// The model is not needed for writing: the collector may
			// have it (a third of the heap at 10,000 rules).
			res := l.result
			l = nil
			return res.WriteSwanctl(c.App.Writer, render.WriteOptions{ShowSecrets: c.Bool("show-secrets")})
		},
	}
}
