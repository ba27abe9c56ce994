package cli

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/internal/suggest"
)

// version is the release, set at link time
// (-ldflags "-X github.com/swanmgr/swanmgr/cli.version=1.2.0"); otherwise
// the module version Go recorded ("(devel)" for a build in the checkout).
var version string

// buildInfo is what `swanmgr version` prints.
type buildInfo struct {
	Version  string
	Commit   string // "" when built without VCS information
	Time     string // commit time
	Modified bool   // built from a working tree with changes
	Go       string
	Govici   string
}

func readBuildInfo() buildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = nil
	}
	return fromBuildInfo(info, version)
}

// fromBuildInfo reads what Go recorded in the binary; release overrides the
// module version when set.
func fromBuildInfo(info *debug.BuildInfo, release string) buildInfo {
	b := buildInfo{Version: release, Govici: "unknown", Go: "unknown"}
	if info == nil {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	b.Go = info.GoVersion
	for _, d := range info.Deps {
		if d.Path == "github.com/strongswan/govici" {
			b.Govici = d.Version
			if d.Replace != nil {
				b.Govici += " => " + d.Replace.Path + " " + d.Replace.Version
			}
		}
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) write(w io.Writer) {
	fmt.Fprintf(w, "swanmgr %s\n", b.Version)
	switch {
	case b.Commit == "":
		fmt.Fprintf(w, "commit  unknown (built without version control information)\n")
	default:
		var notes []string
		if b.Time != "" {
			notes = append(notes, b.Time)
		}
		if b.Modified {
			notes = append(notes, "with uncommitted changes")
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "commit  %s (%s)\n", b.Commit, strings.Join(notes, ", "))
		} else {
			fmt.Fprintf(w, "commit  %s\n", b.Commit)
		}
	}
	fmt.Fprintf(w, "go      %s\n", b.Go)
	fmt.Fprintf(w, "govici  %s\n", b.Govici)
}

var versionFlag = &ucli.BoolFlag{Name: "version", Usage: "print the version (as the version command does) and exit"}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "version",
		Usage:     "print swanmgr's version, commit, Go version and govici version",
		ArgsUsage: " ",
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("version takes no arguments")
			}
			readBuildInfo().write(c.App.Writer)
			return nil
		},
	}
}

// commandPath is "swanmgr" or "swanmgr COMMAND ...", for pointing at --help.
func commandPath(c *ucli.Context) string {
	if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
		return c.App.Name
	}
	if full := c.Command.FullName(); strings.HasPrefix(full, c.App.Name+" ") {
		return full
	} else {
		return c.App.Name + " " + full
	}
}

// appAction runs for `swanmgr` without a command: --version, help, or an
// unknown command.
func appAction(c *ucli.Context) error {
	if c.Bool(versionFlag.Name) {
		readBuildInfo().write(c.App.Writer)
		return nil
	}
	if c.NArg() > 0 {
		name := c.Args().First()
		return usageErrorf("unknown command %q%s (see swanmgr --help)", name, suggestCommand(c.App, name))
	}
	return ucli.ShowAppHelp(c)
}

// suggestCommand returns ` (did you mean "X"?)` for the visible command
// nearest to name, if one is near enough.
func suggestCommand(app *ucli.App, name string) string {
	best, bestD := "", 3
	for _, cmd := range app.VisibleCommands() {
		for _, n := range cmd.Names() {
			if d := suggest.Distance(name, n); d < bestD {
				best, bestD = cmd.Name, d
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// Completion scripts ask the binary itself for the words that may come
// next (urfave/cli's --generate-bash-completion), so they follow the
// commands and flags of the swanmgr they call.
const bashCompletion = `# bash completion for swanmgr: source it, or put it in
# /etc/bash_completion.d/swanmgr (swanmgr completion bash > ...).
_swanmgr_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:$COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[0]}" "${words[@]:1}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[0]}" "${words[@]:1}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _swanmgr_complete swanmgr
`

const zshCompletion = `#compdef swanmgr
# zsh completion for swanmgr: put it in a folder of $fpath as _swanmgr
# (swanmgr completion zsh > ...).
_swanmgr() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _swanmgr swanmgr
`

// The fish script and the man page are made from an app that has not run:
// once running, urfave/cli has added help commands that contain
// themselves, and its fish generator recurses through them forever.

func completionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash:  swanmgr completion bash > /etc/bash_completion.d/swanmgr\n" +
			"zsh:   swanmgr completion zsh > \"${fpath[1]}/_swanmgr\"\n" +
			"fish:  swanmgr completion fish > ~/.config/fish/completions/swanmgr.fish",
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("completion takes one argument: bash, zsh or fish")
			}
			switch c.Args().First() {
			case "bash":
				_, err := io.WriteString(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(c.App.Writer, zshCompletion)
				return err
			case "fish":
				s, err := newApp(io.Discard, io.Discard).ToFishCompletion()
				if err != nil {
					return err
				}
				_, err = io.WriteString(c.App.Writer, s)
				return err
			}
			return usageErrorf("completion: unknown shell %q (bash, zsh or fish)", c.Args().First())
		},
	}
}

func manCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "man",
		Usage:     "print swanmgr's manual page (roff), made from the same definitions as --help",
		ArgsUsage: " ",
		Description: "man ./swanmgr.8 after: swanmgr man > swanmgr.8 (make man does this);\n" +
			"install it as /usr/local/share/man/man8/swanmgr.8",
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("man takes no arguments")
			}
			s, err := newApp(io.Discard, io.Discard).ToMan()
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, s)
			return err
		},
	}
}
