package model

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/swanmgr/swanmgr/internal/suggest"
)

// DefaultPath is where swanmgr looks for the policy file when -f is not given.
const DefaultPath = "/etc/swanmgr/policy.toml"

// Problem is one thing wrong (or worth a warning) in a policy file. Its
// text names the file and line, or the key path, and never a secret.
type Problem struct {
	File    string // the policy file
	Line    int    // 0 when unknown
	Where   string // e.g. `policy "Alice's IPSec" rule "Abczz with Bob"`
	Msg     string
	Warning bool
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Where != "" {
		b.WriteString(p.Where)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every error found in a policy file. It is an error; each
// problem is on its own line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// ErrInvalid is matched (errors.Is) by every error that says the policy
// file itself is wrong, as opposed to a usage or I/O error.
var ErrInvalid = errors.New("invalid policy file")

// Is makes errors.Is(Problems, ErrInvalid) true.
func (ps Problems) Is(target error) bool { return target == ErrInvalid }

// Load reads and strictly decodes a policy file: TOML syntax errors carry
// line and column, and unknown keys and wrong types are errors naming the
// key path and line. It does not validate meaning; see Validate.
func Load(path string) (*File, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (*File, error) {
	f, ps := parse(path, data)
	if len(ps) > 0 {
		return nil, ps
	}
	return f, nil
}

// ParseWith is Parse decoding only the files of a folder (or the chunks of
// a large file) that r does not have the decoded result of (see Reuse); r
// is then told of those decoded. A nil r decodes everything, as Parse.
func ParseWith(path string, data []byte, r *Reuse) (*File, error) {
	f, ps := parseWith(path, data, r)
	if len(ps) > 0 {
		return nil, ps
	}
	return f, nil
}

// ParseValidate is Parse and Validate in one, reporting every problem at
// once: unknown keys and keys in the wrong case do not stop validation of
// the rest (syntax and type errors do, as nothing after them is known).
// The error, if any, is Problems sorted by line.
func ParseValidate(path string, data []byte, o ValidateOptions) (*Assigned, []Problem, error) {
	f, ps := parseWith(path, data, o.Reuse)
	if f == nil {
		return nil, nil, ps
	}
	a, warns, err := Validate(f, o)
	if f.IsFolder() {
		// A folder's problems and warnings in file order, as it reads.
		f.sortProblems(warns)
		if verrs, ok := err.(Problems); ok {
			f.sortProblems(verrs)
		}
	}
	if len(ps) == 0 {
		return a, warns, err
	}
	var verrs Problems
	if err != nil {
		verrs = err.(Problems)
	}
	all := append(ps, verrs...)
	f.sortProblems(all)
	return nil, warns, all
}

// parse decodes a policy file. f is nil when decoding failed (limits,
// syntax, types); otherwise ps holds the unknown keys and keys in the
// wrong case, and f what was decoded besides them.
func parse(path string, data []byte) (f *File, ps Problems) {
	return parseWith(path, data, nil)
}

// parseWith is parse taking what r has of a folder's files, or of a large
// file's chunks.
func parseWith(path string, data []byte, r *Reuse) (f *File, ps Problems) {
	if isBundle(data) {
		return parseFolder(path, data, r)
	}
	if p := checkLimits(path, data); p != nil {
		return nil, Problems{*p}
	}
	text := string(data)
	defer func() {
		// The decoder is third-party code fed with operator input: a panic
		// in it must become a message, not a crash of swanmgr.
		if r := recover(); r != nil {
			f, ps = nil, Problems{{File: path, Msg: fmt.Sprintf("cannot decode the policy file (decoder failure: %v)", r)}}
		}
	}()
	// The headers' lines are scanned while the text is decoded (at
	// thousands of rules each takes tens of milliseconds).
	type scanResult struct {
		pos    *positions
		failed any
	}
	scanned := make(chan scanResult, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				scanned <- scanResult{failed: r}
			}
		}()
		scanned <- scanResult{pos: scanPositions(text)}
	}()
	d, derr := decodeText(text, r)
	sc := <-scanned
	// The decoder's error first: the scan used to run only on text that
	// decoded.
	if derr != nil {
		return nil, Problems{decodeProblem(path, text, derr)}
	}
	if sc.failed != nil {
		panic(sc.failed) // as before, a message below (recover)
	}
	pos := sc.pos
	f = d.f
	f.Path = path
	f.pos = pos
	undecoded := d.undecoded
	names := make(map[string]bool, len(undecoded))
	for _, u := range undecoded {
		names[u.key.String()] = true
	}
	sort.SliceStable(undecoded, func(i, j int) bool { return undecoded[i].key.String() < undecoded[j].key.String() })
	reported := map[string]bool{}
	for _, u := range undecoded {
		k := u.key
		plain := k.String()
		if reported[plain] {
			continue
		}
		reported[plain] = true
		// An unknown table shows up with each of its keys; report the table once.
		if t := u.typ; t != "Hash" && t != "ArrayHash" && parentUndecoded(k, names) {
			continue
		}
		msg := fmt.Sprintf("unknown key %s", plain)
		if s := suggestKey(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		lines := f.pos.linesOf(plain)
		if len(lines) == 0 {
			lines = []int{f.pos.firstLineOf(plain)}
		}
		for _, l := range lines {
			ps = append(ps, Problem{File: path, Line: l, Msg: msg})
		}
	}
	for _, m := range d.miscased {
		plain := m.key.String()
		if reported[plain] {
			continue
		}
		reported[plain] = true
		ps = append(ps, Problem{File: path, Line: f.pos.firstLineOf(plain), Msg: fmt.Sprintf("key %s: keys are lower case (did you mean %s?)", plain, m.want)})
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	if len(ps) > maxKeyProblems {
		more := Problem{File: path, Line: ps[maxKeyProblems].Line, Msg: fmt.Sprintf("%d more unknown or misspelt keys from here on are not listed", len(ps)-maxKeyProblems)}
		ps = append(ps[:maxKeyProblems:maxKeyProblems], more)
	}
	return f, ps
}

// maxKeyProblems bounds the unknown-key problems listed: a file of a
// million unknown keys is not a million lines of use to anyone.
const maxKeyProblems = 100

// parentUndecoded reports whether a table enclosing k is itself unknown
// (names holds the unknown keys' paths).
func parentUndecoded(k toml.Key, names map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if names[k[:i].String()] {
			return true
		}
	}
	return false
}

// decodeProblem turns a decoder error into a Problem with a line (and
// column for syntax errors). Type mismatches name the key path; syntax
// errors on a line that holds an inline secret are reworded, because the
// decoder quotes the offending text and that text could be the secret.
func decodeProblem(path, text string, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, col := pe.Position.Line, pe.Position.Col
		if line == 0 {
			line = pe.Line
		}
		if line > 0 && pe.Position.Start <= len(text) {
			// The lexer has often moved past a newline when it fails on
			// one, and then reports the next line; the byte offset is right.
			before := text[:pe.Position.Start]
			line = strings.Count(before, "\n") + 1
			col = pe.Position.Start - strings.LastIndex(before, "\n")
		}
		msg := pe.Message
		if strings.HasPrefix(msg, wrongTypePrefix) && pe.LastKey != "" {
			return Problem{File: path, Line: line, Msg: fmt.Sprintf("key %s has the wrong type: %s", pe.LastKey, strings.TrimPrefix(msg, wrongTypePrefix))}
		}
		if isSecretKey(pe.LastKey) || lineAssignsSecret(text, line) {
			msg = "the value of secret is not valid TOML (details hidden because they could show the secret); write it as a quoted string, secret = \"...\", or better use secret_file"
		} else if pe.LastKey != "" {
			msg = fmt.Sprintf("%s (key %s)", msg, pe.LastKey)
		}
		if col > 0 {
			return Problem{File: path, Line: line, Msg: fmt.Sprintf("column %d: %s", col, msg)}
		}
		return Problem{File: path, Line: line, Msg: msg}
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	var line int
	if m := decodeErrRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		key, rest := m[2], m[3]
		if t := incompatibleRe.FindStringSubmatch(rest); t != nil {
			rest = fmt.Sprintf("found %s, expected %s", tomlTypeName(t[1]), goTypeName(t[2]))
		} else if t := mismatchRe.FindStringSubmatch(rest); t != nil {
			rest = fmt.Sprintf("found %s, expected a table", tomlTypeName(t[1]))
		} else {
			return Problem{File: path, Line: line, Msg: fmt.Sprintf("key %s: %s", key, rest)}
		}
		return Problem{File: path, Line: line, Msg: fmt.Sprintf("key %s has the wrong type: %s", key, rest)}
	}
	return Problem{File: path, Msg: msg}
}

var (
	// "line 3 (last key \"endpoint.addresses\"): incompatible types: ..."
	decodeErrRe    = regexp.MustCompile(`^(?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)
	incompatibleRe = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	mismatchRe     = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
	secretLineRe   = regexp.MustCompile(`(^|[\s{,])secret\s*=`)
)

// wrongTypePrefix starts the error of a custom decoder (Secret) that was
// handed a value of the wrong TOML type.
const wrongTypePrefix = "wrong type: "

func isSecretKey(k string) bool { return k == "secret" || strings.HasSuffix(k, ".secret") }

func lineAssignsSecret(text string, line int) bool {
	lines := strings.Split(text, "\n")
	return line >= 1 && line <= len(lines) && secretLineRe.MatchString(lines[line-1])
}

// tomlTypeName names the Go type the decoder read a TOML value as.
func tomlTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "int64":
		return "an integer"
	case t == "float64":
		return "a float"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "map["):
		return "a table"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.HasPrefix(t, "time.") || strings.HasPrefix(t, "toml.Local"):
		return "a date/time"
	}
	return t
}

// goTypeName names what the decoder wanted.
func goTypeName(t string) string {
	switch t {
	case "slice":
		return "an array"
	case "string", "primitive (string-like)":
		return "a string"
	case "integer":
		return "an integer"
	case "float":
		return "a number"
	case "boolean":
		return "true or false"
	case "map":
		return "a table"
	}
	return t
}

// knownKeys lists, for each table path (index-free), the keys it takes.
var knownKeys = map[string][]string{
	"":                           {"assign", "endpoint", "filter_list", "filter_action", "policy"},
	"endpoint":                   {"name", "addresses", "id", "lan_interface", "remote_access_interface"},
	"filter_list":                {"name", "description", "filter"},
	"filter_list.filter":         {"description", "source", "destination", "protocol", "source_port", "destination_port", "mirrored"},
	"filter_action":              {"name", "description", "action", "security", "pfs", "fallback_to_clear", "accept_unsecured", "guard", "esp_encryption", "esp_integrity", "ah_integrity", "pfs_group", "rekey_seconds", "rekey_kilobytes"},
	"policy":                     {"name", "description", "default_response_rule", "rule"},
	"policy.rule":                {"name", "filter_list", "filter_action", "network", "tunnel_endpoint", "authentication", "disabled"},
	"policy.rule.authentication": {"method", "secret_file", "secret_env", "secret", "ca", "certificate", "private_key", "peer_id"},
}

func suggestKey(k toml.Key) string {
	parent := strings.Join(k[:len(k)-1], ".")
	best := closest(k[len(k)-1], knownKeys[parent])
	if best == "" {
		return ""
	}
	return best
}

// closest returns the candidate nearest to s by edit distance (ignoring
// case), if near enough; "" when s is itself a candidate or none is near.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if c == s {
			return ""
		}
		d := suggest.Distance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := len(s) / 3
	if limit < 2 {
		limit = 2
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// Dir is the folder that relative paths in the file resolve against.
func (f *File) Dir() string {
	if f.dir != "" {
		return f.dir
	}
	return filepath.Dir(f.Path)
}

// Resolve returns p relative to the policy file's folder, unless absolute.
func (f *File) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.Dir(), p)
}

// ReferencedFiles lists the key and certificate files the rules of every
// policy name (secret_file, ca, certificate, private_key), resolved, in
// order, once each, whether they exist or not.
func (f *File) ReferencedFiles() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" {
			return
		}
		if p = f.Resolve(p); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range f.Policies {
		for _, r := range p.Rules {
			for _, a := range r.Authentication {
				add(a.SecretFile)
				add(a.CA)
				add(a.Certificate)
				add(a.PrivateKey)
			}
		}
	}
	return out
}
