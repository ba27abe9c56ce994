package importer

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is a problem with the script itself, at FILE:LINE. Nothing is
// written for a script with an Error.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

func errAt(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// Command is one netsh command of a script: `add filter filterlist=X
// srcaddr=me ...` in the context `ipsec static`.
type Command struct {
	File    string
	Line    int    // the line the command starts on
	Context string // "ipsec static", "advfirewall consec", or "" when the script does not say
	Verb    string // add, set, delete, ...
	Object  string // policy, filterlist, filter, rule, ... ("" for a verb alone)
	Args    []Arg
}

// Where is the command's FILE:LINE.
func (c Command) Where() string { return fmt.Sprintf("%s:%d", c.File, c.Line) }

// Arg is one parameter: tag=value, or a value alone (positional). Tags
// are lower case, as netsh ignores their case.
type Arg struct {
	Tag   string
	Value string
}

// MaxScriptSize bounds what Parse reads: real scripts are kilobytes.
const MaxScriptSize = 4 << 20

// topContexts are netsh's top-level contexts this package knows by name;
// subContexts the words that may follow them.
var (
	topContexts = map[string]bool{"ipsec": true, "advfirewall": true, "firewall": true}
	subContexts = map[string]bool{"static": true, "dynamic": true, "consec": true, "mainmode": true,
		"firewall": true, "monitor": true}
)

// Parse splits a script into its commands. file names the script in
// messages. Blank lines, comments (#, rem, ::), @echo and echo lines are
// skipped; a line ending in ^ or \ continues on the next one.
func Parse(file string, data []byte) ([]Command, error) {
	if len(data) > MaxScriptSize {
		return nil, errAt(file, 1, "the script is larger than %d bytes", MaxScriptSize)
	}
	text := strings.TrimPrefix(string(data), "\ufeff") // a BOM, as Notepad writes
	if strings.IndexByte(text, 0) >= 0 {
		return nil, errAt(file, 1+strings.Count(text[:strings.IndexByte(text, 0)], "\n"),
			"a NUL byte: this is not a text script (UTF-16 scripts must be saved as UTF-8 or ANSI first)")
	}
	phys := strings.Split(text, "\n")
	var cmds []Command
	var stack []string // pushd contexts
	current := ""
	for i := 0; i < len(phys); i++ {
		start := i + 1
		line := strings.TrimRight(phys[i], "\r")
		for continues(line) && i+1 < len(phys) {
			line = strings.TrimRight(line, " \t")
			line = line[:len(line)-1] + " " + strings.TrimRight(phys[i+1], "\r")
			i++
		}
		line = strings.TrimSpace(line)
		line = strings.TrimPrefix(line, "@")
		if skipLine(line) {
			continue
		}
		toks, err := tokenize(line)
		if err != nil {
			return nil, errAt(file, start, "%s", err)
		}
		if len(toks) == 0 {
			continue
		}
		cmd, ctxChange, err := command(toks, current)
		if err != nil {
			return nil, errAt(file, start, "%s", err)
		}
		switch ctxChange.kind {
		case "pushd":
			stack = append(stack, current)
			current = ctxChange.ctx
			continue
		case "popd":
			if len(stack) == 0 {
				return nil, errAt(file, start, "popd without pushd")
			}
			current, stack = stack[len(stack)-1], stack[:len(stack)-1]
			continue
		case "set":
			current = ctxChange.ctx
			continue
		case "skip":
			continue
		}
		cmd.File, cmd.Line = file, start
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

func continues(line string) bool {
	t := strings.TrimRight(line, " \t\r")
	return strings.HasSuffix(t, "^") || strings.HasSuffix(t, "\\")
}

// skipLine reports comments and the batch-file noise around netsh lines.
func skipLine(line string) bool {
	if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "::") {
		return true
	}
	w := strings.ToLower(line)
	first, _, _ := strings.Cut(w, " ")
	first, _, _ = strings.Cut(first, "\t")
	switch first {
	case "rem", "echo", "echo.", "pause", "cls", "setlocal", "endlocal":
		return true
	}
	return strings.HasPrefix(w, "rem\t")
}

// token is one word of a line with its quotes removed. eq is the index of
// its first '=' outside quotes, or -1.
type token struct {
	text string
	eq   int
}

func tokenize(line string) ([]token, error) {
	var toks []token
	var b strings.Builder
	inTok, quoted := false, false
	eq := -1
	flush := func() {
		if inTok {
			toks = append(toks, token{text: b.String(), eq: eq})
		}
		b.Reset()
		inTok, eq = false, -1
	}
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			inTok = true
		case !quoted && (r == ' ' || r == '\t'):
			flush()
		case !quoted && r == '=' && eq < 0:
			eq = b.Len()
			b.WriteRune(r)
			inTok = true
		default:
			b.WriteRune(r)
			inTok = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("a quote is not closed")
	}
	flush()
	return toks, nil
}

type ctxChange struct {
	kind string // "", "pushd", "popd", "set", "skip"
	ctx  string
}

// command reads the netsh prefix, options and context words of a line,
// then the verb, object and parameters.
func command(toks []token, current string) (Command, ctxChange, error) {
	var c Command
	low := func(i int) string { return strings.ToLower(toks[i].text) }
	i := 0
	var ctx []string
	switch low(0) {
	case "pushd", "popd":
		words := make([]string, 0, len(toks)-1)
		for _, t := range toks[1:] {
			words = append(words, strings.Fields(strings.ToLower(t.text))...)
		}
		if low(0) == "popd" {
			return c, ctxChange{kind: "popd"}, nil
		}
		n, err := joinContext(current, words)
		if err != nil {
			return c, ctxChange{}, err
		}
		return c, ctxChange{kind: "pushd", ctx: n}, nil
	case "exit", "bye", "quit", "..":
		return c, ctxChange{kind: "skip"}, nil
	case "netsh", "netsh.exe":
		i = 1
		for i < len(toks) && strings.HasPrefix(toks[i].text, "-") {
			opt := strings.ToLower(toks[i].text)
			if i+1 >= len(toks) {
				return c, ctxChange{}, fmt.Errorf("netsh option %s needs a value", toks[i].text)
			}
			switch opt {
			case "-c":
				ctx = append(ctx, strings.Fields(strings.ToLower(toks[i+1].text))...)
			case "-f":
				return c, ctxChange{}, fmt.Errorf("netsh -f runs the script %q: import that script instead", toks[i+1].text)
			case "-r":
				return c, ctxChange{}, fmt.Errorf("netsh -r %q configures another computer: import that computer's commands on their own", toks[i+1].text)
			case "-u", "-p":
				// credentials for -r; never echoed
			default:
				return c, ctxChange{}, fmt.Errorf("unknown netsh option %s", toks[i].text)
			}
			i += 2
		}
		if i == len(toks) {
			return c, ctxChange{kind: "skip"}, nil
		}
	}
	for i < len(toks) && toks[i].eq < 0 && (topContexts[low(i)] || subContexts[low(i)]) {
		ctx = append(ctx, low(i))
		i++
	}
	full := current
	if len(ctx) > 0 {
		var err error
		if full, err = joinContext(current, ctx); err != nil {
			return c, ctxChange{}, err
		}
	}
	if i == len(toks) {
		// A line of context words alone switches context, as in netsh's
		// interactive shell.
		return c, ctxChange{kind: "set", ctx: full}, nil
	}
	if toks[i].eq >= 0 {
		// The value is not shown: a broken continuation can leave psk=...
		// at the start of a line.
		return c, ctxChange{}, fmt.Errorf("parameter %s= where a command such as \"add policy\" is expected (a line continuation missing its ^?)", word(toks[i].text[:toks[i].eq]))
	}
	c.Context = full
	c.Verb = low(i)
	switch c.Verb {
	case "add", "set", "delete", "show", "dump", "exportpolicy", "importpolicy", "reset":
	default:
		return c, ctxChange{}, fmt.Errorf("%s commands are not IPsec policy commands this importer reads (netsh ipsec static, advfirewall consec)", word(toks[i].text))
	}
	i++
	if i < len(toks) && toks[i].eq < 0 {
		c.Object = low(i)
		i++
	}
	for ; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.eq < 0 && i+1 < len(toks) && toks[i+1].eq == 0:
			// "tag = value" or "tag =value"
			v := toks[i+1].text[1:]
			i++
			if v == "" && i+1 < len(toks) && toks[i+1].eq < 0 {
				v = toks[i+1].text
				i++
			}
			c.Args = append(c.Args, Arg{Tag: strings.ToLower(t.text), Value: v})
		case t.eq < 0:
			c.Args = append(c.Args, Arg{Value: t.text})
		case t.eq == 0:
			return c, ctxChange{}, fmt.Errorf("a value (=...) without a parameter name; the value is not shown, it could be a key")
		default:
			v := t.text[t.eq+1:]
			if v == "" && i+1 < len(toks) && toks[i+1].eq < 0 {
				v = toks[i+1].text
				i++
			}
			c.Args = append(c.Args, Arg{Tag: strings.ToLower(t.text[:t.eq]), Value: v})
		}
	}
	return c, ctxChange{}, nil
}

// joinContext applies context words to the current context: words that
// start with a top-level context replace it, others extend it.
func joinContext(current string, words []string) (string, error) {
	if len(words) == 0 {
		return current, nil
	}
	for _, w := range words {
		if !topContexts[w] && !subContexts[w] {
			return "", fmt.Errorf("%q is not a netsh context this importer reads (ipsec static, advfirewall consec)", w)
		}
	}
	if topContexts[words[0]] && !(current != "" && subContexts[words[0]] && !strings.Contains(current, " ")) {
		return strings.Join(words, " "), nil
	}
	if current == "" {
		return strings.Join(words, " "), nil
	}
	return current + " " + strings.Join(words, " "), nil
}

// word quotes a command word for a message, or says "this line's first
// word" when it does not look like one (it could be a key).
func word(s string) string {
	if len(s) == 0 || len(s) > 24 {
		return "this line's first word"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '.') {
			return "this line's first word"
		}
	}
	return strconv.Quote(s)
}
