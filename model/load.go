package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(f)
	if err != nil {
		return nil, Problems{decodeProblem(path, err)}
	}
	f.pos = scanPositions(string(data))
	var ps Problems
	undecoded := md.Undecoded()
	sort.Slice(undecoded, func(i, j int) bool { return undecoded[i].String() < undecoded[j].String() })
	for _, k := range undecoded {
		plain := k.String()
		// An unknown table shows up with each of its keys; report the table once.
		if md.Type(k...) == "Hash" || md.Type(k...) == "ArrayHash" {
			// keep: a misspelt [section] is worth reporting by itself
		} else if parentUndecoded(k, undecoded) {
			continue
		}
		msg := fmt.Sprintf("unknown key %s", plain)
		if s := suggestKey(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		ps = append(ps, Problem{File: path, Line: f.pos.firstLineOf(plain), Msg: msg})
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return f, nil
}

func parentUndecoded(k toml.Key, all []toml.Key) bool {
	for _, o := range all {
		if len(o) < len(k) && strings.HasPrefix(k.String(), o.String()+".") {
			return true
		}
	}
	return false
}

// decodeProblem turns a decoder error into a Problem with a line (and
// column for syntax errors). The decoder's own wording is kept.
func decodeProblem(path string, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s (key %s)", msg, pe.LastKey)
		}
		line := pe.Position.Line
		if line == 0 {
			line = pe.Line
		}
		if pe.Position.Col > 0 {
			return Problem{File: path, Line: line, Msg: fmt.Sprintf("column %d: %s", pe.Position.Col, msg)}
		}
		return Problem{File: path, Line: line, Msg: msg}
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d", &line); n == 1 {
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
	}
	return Problem{File: path, Line: line, Msg: msg}
}

// knownKeys lists, for each table path (index-free), the keys it takes.
var knownKeys = map[string][]string{
	"":                           {"assign", "endpoint", "filter_list", "filter_action", "policy"},
	"endpoint":                   {"name", "addresses", "id", "lan_interface", "remote_access_interface"},
	"filter_list":                {"name", "description", "filter"},
	"filter_list.filter":         {"description", "source", "destination", "protocol", "source_port", "destination_port", "mirrored"},
	"filter_action":              {"name", "description", "action", "security", "pfs", "fallback_to_clear", "accept_unsecured", "esp_encryption", "esp_integrity", "ah_integrity", "pfs_group", "rekey_seconds", "rekey_kilobytes"},
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

// closest returns the candidate nearest to s by edit distance, if near enough.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := len(s) / 3
	if limit < 2 {
		limit = 2
	}
	if bestD <= limit && bestD > 0 {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// Dir is the folder that relative paths in the file resolve against.
func (f *File) Dir() string { return filepath.Dir(f.Path) }

// Resolve returns p relative to the policy file's folder, unless absolute.
func (f *File) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.Dir(), p)
}
