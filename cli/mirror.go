package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/pair"
	"github.com/swanmgr/swanmgr/render"
)

func mirrorCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "mirror",
		Usage: "write the peer's policy file: the exact mirror of every rule that concerns it",
		Description: "The knowledge base's \"Repeat on the computer that belongs to Bob ... The\n" +
			"necessary changes are obvious\", done for you: every filter of a rule that\n" +
			"involves the peer names the same traffic from the peer's side (\"me\" and the\n" +
			"peer swapped, ports kept with their addresses), names are adapted (\"Abczz to\n" +
			"Bob's PC\" → \"Abczz to Alicepc\", or --rename), filter actions and\n" +
			"authentication are the same (a preshared key stays a reference to the same\n" +
			"file or variable and is never copied). Rules for other peers are left out.\n" +
			"The policy is named after the peer, and files the peer needs a copy of (key\n" +
			"files, the CA) are named next to its own policy file, never by this computer's\n" +
			"paths; notes say what to copy where. The output is validated and checked\n" +
			"against the source before it is written.",
		ArgsUsage: " ",
		Flags: []ucli.Flag{fileFlag, insecureFlag,
			&ucli.StringFlag{Name: "peer", Required: true, Usage: "the peer's IP address, as the filters name it"},
			&ucli.StringFlag{Name: "name", Usage: "the peer's computer name (its endpoint.name; default the address)"},
			&ucli.StringSliceFlag{Name: "rename", Usage: "OLD=NEW: use NEW for the filter list, filter action, rule or policy named OLD (repeat)"},
			&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write here instead of standard output (paths to keys are made relative to its folder)"},
			&ucli.BoolFlag{Name: "force", Usage: "overwrite --output if it exists"},
			&ucli.StringFlag{Name: "certificate", Usage: "the peer's certificate, for rules that authenticate with certificates"},
			&ucli.StringFlag{Name: "private-key", Usage: "the peer's private key, for rules that authenticate with certificates"},
		},
		Action: runMirror,
	}
}

func runMirror(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("mirror takes no arguments (use -f FILE --peer ADDRESS)")
	}
	peer, err := netip.ParseAddr(c.String("peer"))
	if err != nil {
		return usageErrorf("--peer %q: give the peer's IP address as the filters name it", c.String("peer"))
	}
	renames := map[string]string{}
	for _, r := range c.StringSlice("rename") {
		old, new, ok := strings.Cut(r, "=")
		if !ok || old == "" || new == "" {
			return usageErrorf("--rename %q: want OLD=NEW", r)
		}
		renames[old] = new
	}
	out := c.String("output")
	if out != "" && !c.Bool("force") {
		if _, err := os.Stat(out); err == nil {
			return usageErrorf("%s exists: use --force to overwrite it", out)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	vo := validateOptions(c)
	src, err := loadEndpoint(c, c.String(fileFlag.Name), render.Kernel, vo)
	if err != nil {
		return err
	}
	m, err := pair.Mirror(src.Assigned, pair.MirrorOptions{Peer: peer, Name: c.String("name"), Renames: renames, OutPath: out,
		Certificate: c.String("certificate"), PrivateKey: c.String("private-key")})
	if err != nil {
		return err
	}

	// The output must validate and agree with its source before anyone
	// loads it (pair.VerifyMirror).
	outPath := out
	if outPath == "" {
		outPath = filepath.Join(".", "mirror-for-"+peer.String()+".toml")
	}
	load := func(path string, text []byte, env map[string]model.Secret) (*pair.Endpoint, error) {
		vo := vo
		vo.LookupEnv = func(k string) (string, bool) {
			if s, ok := env[k]; ok {
				return s.Reveal(), true
			}
			return os.LookupEnv(k)
		}
		return parseEndpoint(c, path, text, render.Kernel, vo)
	}
	verified, notYet, err := pair.VerifyMirror(src, m, outPath, load, time.Now())
	var me *pair.MirrorError
	switch {
	case errors.As(err, &me):
		for _, p := range me.Problems {
			fmt.Fprintln(c.App.ErrWriter, p.Error())
		}
		return err
	case err != nil:
		return err
	case notYet != nil:
		// The peer's certificate and key are not there yet: write the file,
		// say what to add; validate and check come after.
		fmt.Fprintf(c.App.ErrWriter, "note: the mirrored policy names files that do not exist yet, so it is not validated or checked: %v\n", notYet)
	}

	if out == "" {
		if _, err := c.App.Writer.Write(m.Text); err != nil {
			return err
		}
	} else {
		if err := os.WriteFile(out, m.Text, 0o644); err != nil {
			return err
		}
		verdict := "it validates and `swanmgr check %s %s` agrees"
		missing := false
		for _, cp := range m.Copies {
			if _, err := os.Stat(filepath.Join(filepath.Dir(out), cp.To)); err != nil {
				missing = true
			}
		}
		switch {
		case !verified:
			verdict = "run `swanmgr check %s %s` once the files it names exist"
		case missing:
			verdict = "it validates with this computer's key files; `swanmgr check %s %s` agrees once the files the notes name are copied next to it"
		}
		fmt.Fprintf(c.App.Writer, "%s: %s for %s mirrored from %s; "+verdict+"\n",
			out, plural(m.Rules, "rule"), peer, src.Path, src.Path, out)
	}
	for _, n := range m.Notes {
		fmt.Fprintf(c.App.ErrWriter, "note: %s\n", n)
	}
	return nil
}
