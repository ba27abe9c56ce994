package cli

import (
	"errors"
	"fmt"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/pair"
	"github.com/swanmgr/swanmgr/render"
)

func checkCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "check",
		Usage:     "offline: will these endpoints agree? (selectors mirror, proposals intersect, keys, identities, modes); exit 0 yes, 1 with every problem, 2 usage",
		ArgsUsage: "FILE FILE [FILE...]",
		Description: "Each FILE is one endpoint's policy. For every pair of endpoints with rules for\n" +
			"each other, check compares the rendered selectors (a reversed address or port\n" +
			"pair, a missing port, a narrower side), the ESP/AH and IKE proposals (and says\n" +
			"which would be chosen; a PFS mismatch shows only at the first rekey), the\n" +
			"authentication (preshared keys compared without printing them; certificates\n" +
			"verified against the other side's CA), identities, modes and lifetimes.\n" +
			"Problems name both files and lines. Nothing talks to charon.",
		Flags: []ucli.Flag{insecureFlag, backendFlag},
		Action: func(c *ucli.Context) error {
			if c.NArg() < 2 {
				return usageErrorf("check needs at least two policy files (one per endpoint)")
			}
			backend, err := render.ParseBackend(c.String(backendFlag.Name))
			if err != nil {
				return usageErrorf("%v", err)
			}
			var eps []pair.Endpoint
			var errs []error
			for _, path := range c.Args().Slice() {
				ep, err := loadEndpoint(c, path, backend, validateOptions(c))
				if err != nil {
					errs = append(errs, err)
					continue
				}
				eps = append(eps, *ep)
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			return reportCheck(c, pair.Check(eps, time.Now()))
		},
	}
}

// loadEndpoint reads, validates and renders one endpoint's policy file.
func loadEndpoint(c *ucli.Context, path string, backend render.Backend, vo model.ValidateOptions) (*pair.Endpoint, error) {
	data, err := model.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseEndpoint(c, path, data, backend, vo)
}

func parseEndpoint(c *ucli.Context, path string, data []byte, backend render.Backend, vo model.ValidateOptions) (*pair.Endpoint, error) {
	l, err := loadPolicyData(c, backend, path, data, vo)
	if err != nil {
		return nil, err
	}
	return &pair.Endpoint{Path: path, Assigned: l.assigned, Result: l.result}, nil
}

// reportCheck prints what agrees on stdout and every problem on stderr.
func reportCheck(c *ucli.Context, rep *pair.Report) error {
	for _, l := range rep.Lines {
		fmt.Fprintln(c.App.Writer, l)
	}
	if len(rep.Lines) == 0 {
		fmt.Fprintln(c.App.Writer, "no two of these endpoints have rules for each other: nothing to compare")
	}
	if rep.OK() {
		fmt.Fprintln(c.App.Writer, "check: the endpoints agree")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(c.App.ErrWriter, p.Error())
	}
	return &exitError{code: ExitFailure, err: fmt.Errorf("check: %s: these endpoints will not agree", plural(len(rep.Problems), "problem"))}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
