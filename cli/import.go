package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/importer"
	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

const netshDescription = "Reads the commands of a `netsh ipsec static` script (add policy, add filterlist,\n" +
	"add filter, add filteraction, add rule, set policy, set defaultrule, set store)\n" +
	"and writes one policy: the assigned one (assign=yes, or --policy) with its rules,\n" +
	"filter lists, filter actions and authentication. A psk= is written to a key\n" +
	"file (mode 0600) next to the output and referenced by secret_file; it is never\n" +
	"printed. Every option without a faithful strongSwan equivalent is reported with\n" +
	"the script's FILE:LINE and what was done instead; then nothing is written and\n" +
	"the exit code is 1, unless --allow-partial. The output is validated before it\n" +
	"is written. See docs/import.md."

func importCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the policy here (key files go next to it); default standard output, which a script with a preshared key refuses"},
		&ucli.StringSliceFlag{Name: "address", Usage: "this computer's IP address, what \"me\" means (repeat for several; required: scripts do not name it)"},
		&ucli.StringFlag{Name: "name", Usage: "this computer's name (endpoint.name)"},
		&ucli.StringFlag{Name: "policy", Usage: "netsh: import this policy (default: the one with assign=yes); consec: the policy's name"},
		&ucli.BoolFlag{Name: "allow-partial", Usage: "write the policy even when some options could not be carried over faithfully (the notes say what was done instead)"},
		&ucli.BoolFlag{Name: "legacy-algorithms", Usage: "keep DES, 3DES and MD5 offers (custom security; validate warns) instead of leaving them out"},
		&ucli.BoolFlag{Name: "force", Usage: "overwrite the output and its key files if they exist"},
		&ucli.StringFlag{Name: "ca", Usage: "CA certificate file for certificate rules (default ca.pem next to the output)"},
		&ucli.StringFlag{Name: "certificate", Usage: "this computer's certificate for certificate rules (default host.pem)"},
		&ucli.StringFlag{Name: "private-key", Usage: "its private key (default host.key)"},
		&ucli.StringFlag{Name: "remote-access-interface", Usage: "the interface of dial-up (ras) rules (endpoint.remote_access_interface)"},
		insecureFlag,
	}
	return &ucli.Command{
		Name:        "import",
		Usage:       "turn Windows netsh IPsec scripts (ipsec static, advfirewall consec) into a policy file",
		Description: netshDescription + "\n\n`swanmgr import consec` reads netsh advfirewall consec rules instead.",
		Subcommands: []*ucli.Command{{
			Name:        "netsh",
			Usage:       "import a netsh ipsec static script",
			Description: netshDescription,
			ArgsUsage:   "FILE",
			Flags:       flags,
			Action:      func(c *ucli.Context) error { return runImport(c, "netsh") },
		}, {
			Name:  "consec",
			Usage: "import netsh advfirewall consec rules (connection security rules)",
			Description: "Reads `netsh advfirewall consec add rule` (and `delete rule name=`) lines and\n" +
				"writes one policy (named by --policy, default \"" + importer.DefaultConsecPolicy + "\") in which each\n" +
				"rule becomes a filter list, a filter action and a rule of its name: endpoint1\n" +
				"is this computer's side, endpoint2 the peers; requireinrequireout is negotiate,\n" +
				"noauthentication is permit; request modes are imported as require and reported.\n" +
				"Keys, notes, --allow-partial and validation as for import netsh. See docs/import.md.",
			ArgsUsage: "FILE",
			Flags:     flags,
			Action:    func(c *ucli.Context) error { return runImport(c, "consec") },
		}},
	}
}

func runImport(c *ucli.Context, tool string) error {
	if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
		return rerunFlagsFirst(c, tool)
	}
	if c.NArg() != 1 {
		return usageErrorf("import %s takes one script file (swanmgr import %s FILE -o OUT.toml --address ADDR)", tool, tool)
	}
	if len(c.StringSlice("address")) == 0 {
		return usageErrorf("import %s: give --address, this computer's IP address (\"me\" in the script)", tool)
	}
	file := c.Args().First()
	data, err := readScript(file)
	if err != nil {
		return err
	}
	out := c.String("output")
	prefix := "imported"
	if out != "" {
		prefix = strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	}
	o := importer.Options{
		Addresses: c.StringSlice("address"), Name: c.String("name"), Policy: c.String("policy"),
		KeyPrefix: prefix, LegacyAlgorithms: c.Bool("legacy-algorithms"),
		CA: c.String("ca"), Certificate: c.String("certificate"), PrivateKey: c.String("private-key"),
		RemoteAccessInterface: c.String("remote-access-interface"),
	}
	imp := importer.Netsh
	if tool == "consec" {
		imp = importer.Consec
	}
	res, err := imp(file, data, o)
	if err != nil {
		return err
	}
	return writeImport(c, res, out)
}

// rerunFlagsFirst runs `import TOOL FILE -o OUT ...` as `import TOOL
// -o OUT ... FILE`: urfave/cli stops reading flags at the first argument.
func rerunFlagsFirst(c *ucli.Context, tool string) error {
	args := []string{"swanmgr", "import", tool}
	for _, name := range c.FlagNames() {
		if !c.IsSet(name) {
			continue
		}
		if vs := c.StringSlice(name); len(vs) > 0 && name == "address" {
			for _, v := range vs {
				args = append(args, "--"+name+"="+v)
			}
			continue
		}
		args = append(args, "--"+name+"="+c.Generic(name).(fmt.Stringer).String())
	}
	args = append(args, c.Args().Tail()...)
	args = append(args, c.Args().First())
	app := newApp(c.App.Writer, c.App.ErrWriter)
	app.Metadata = c.App.Metadata
	return app.RunContext(c.Context, args)
}

// readScript reads a script of at most importer.MaxScriptSize bytes.
func readScript(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, importer.MaxScriptSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return data, nil
}

// writeImport validates the imported policy and writes it with its key
// files: nothing is written when it is partial (without --allow-partial)
// or does not validate.
func writeImport(c *ucli.Context, res *importer.Result, out string) error {
	stderr := c.App.ErrWriter
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n.String())
	}
	if res.Partial() && !c.Bool("allow-partial") {
		return fmt.Errorf("import: some options could not be carried over faithfully (\"not carried over\" above): nothing written; --allow-partial writes the policy with what the notes say was done instead")
	}
	if out == "" && len(res.Keys) > 0 {
		return usageErrorf("import: %s: give -o OUT.toml: the script holds a preshared key, which is written to a key file next to the output and never printed", res.Keys[0].Where)
	}
	text, err := res.TOML()
	if err != nil {
		return err
	}
	dir := "."
	path := "imported.toml"
	if out != "" {
		dir, path = filepath.Dir(out), out
	}
	// Validate before anything is written: the keys come from memory.
	missing := missingFiles(dir, res.CertFiles())
	if len(missing) == 0 {
		check, env := res.WithKeysFromEnv()
		ctext, err := check.TOML()
		if err != nil {
			return err
		}
		vo := validateOptions(c)
		vo.LookupEnv = func(k string) (string, bool) {
			s, ok := env[k]
			return s.Reveal(), ok
		}
		a, warns, err := model.ParseValidate(path, ctext, vo)
		if err == nil {
			_, err = render.Render(a, render.Options{Backend: render.Kernel})
		}
		if err != nil {
			return fmt.Errorf("import: the imported policy does not validate, nothing written:\n%w", err)
		}
		for _, w := range warns {
			fmt.Fprintln(stderr, w.Error())
		}
	}

	if out == "" {
		_, err := c.App.Writer.Write(text)
		return err
	}
	targets := []string{out}
	for _, k := range res.Keys {
		targets = append(targets, filepath.Join(dir, k.File))
	}
	if !c.Bool("force") {
		for _, t := range targets {
			if _, err := os.Lstat(t); err == nil {
				return usageErrorf("%s exists: use --force to overwrite it", t)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	for _, k := range res.Keys {
		if err := writeKeyFile(filepath.Join(dir, k.File), k.Secret); err != nil {
			return err
		}
	}
	if err := os.WriteFile(out, text, 0o644); err != nil {
		return err
	}
	p := res.File.Policies[0]
	verdict := "`swanmgr validate -f " + out + "` passes"
	if len(missing) > 0 {
		verdict = "put " + strings.Join(missing, ", ") + " next to it, then run `swanmgr validate -f " + out + "`"
	}
	fmt.Fprintf(c.App.Writer, "%s: policy %q imported from %s: %s, %s; %s\n",
		out, p.Name, res.Source, plural(len(p.Rules), "rule"), plural(len(res.Keys), "key file")+" (mode 0600)", verdict)
	return nil
}

func missingFiles(dir string, files []string) []string {
	var out []string
	for _, f := range files {
		p := f
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, f)
		}
		if _, err := os.Stat(p); err != nil {
			out = append(out, f)
		}
	}
	return out
}

// writeKeyFile writes a preshared key with mode 0600 (also when it
// replaces a file that had another mode).
func writeKeyFile(path string, s model.Secret) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("import: key file %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("import: key file %s: %w", path, err)
	}
	if _, err := f.WriteString(s.Reveal() + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("import: key file %s: %w", path, err)
	}
	return f.Close()
}
