package importer

import (
	"fmt"
	"strconv"
	"strings"
)

// params reads a command's arguments against the parameters it takes, in
// netsh's positional order. A tag may be abbreviated to any prefix that
// names one parameter (netsh accepts qmsec= for qmsecmethods=); repeat
// lists the parameters that may appear more than once.
type params struct {
	cmd    Command
	values map[string]string
	multi  map[string][]string
	order  []string // tags in the order given (authentication methods keep it)
}

func readParams(c Command, names []string, repeat ...string) (*params, error) {
	p := &params{cmd: c, values: map[string]string{}, multi: map[string][]string{}}
	rep := map[string]bool{}
	for _, r := range repeat {
		rep[r] = true
	}
	pos := 0
	for _, a := range c.Args {
		tag := a.Tag
		if tag == "" {
			if pos >= len(names) {
				return nil, errAt(c.File, c.Line, "%s %s: value %d has no parameter name and the command takes only %d in order (%s); the value is not shown, it could be a key", c.Verb, c.Object, pos+1, len(names), strings.Join(names, ", "))
			}
			tag = names[pos]
			pos++
		} else {
			full, err := matchTag(tag, names)
			if err != nil {
				return nil, errAt(c.File, c.Line, "%s %s: %v", c.Verb, c.Object, err)
			}
			tag = full
		}
		if _, dup := p.values[tag]; dup && !rep[tag] {
			return nil, errAt(c.File, c.Line, "%s %s: %s given twice", c.Verb, c.Object, tag)
		}
		p.values[tag] = a.Value
		p.multi[tag] = append(p.multi[tag], a.Value)
		p.order = append(p.order, tag)
	}
	return p, nil
}

func matchTag(tag string, names []string) (string, error) {
	var hits []string
	for _, n := range names {
		if n == tag {
			return n, nil
		}
		if strings.HasPrefix(n, tag) {
			hits = append(hits, n)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return "", fmt.Errorf("unknown parameter %q (this command takes %s)", tag, strings.Join(names, ", "))
	default:
		return "", fmt.Errorf("parameter %q is ambiguous: %s", tag, strings.Join(hits, ", "))
	}
}

func (p *params) has(k string) bool { _, ok := p.values[k]; return ok }

func (p *params) str(k string) string { return p.values[k] }

// required is a parameter that must be there and not be empty.
func (p *params) required(k string) (string, error) {
	v := p.values[k]
	if strings.TrimSpace(v) == "" {
		return "", p.errf("%s is required", k)
	}
	return v, nil
}

// yesNo reads yes/no (and y/n, as netsh does); def when absent.
func (p *params) yesNo(k string, def bool) (bool, error) {
	v, ok := p.values[k]
	if !ok {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "yes", "y":
		return true, nil
	case "no", "n":
		return false, nil
	}
	return false, p.errf("%s=%q: want yes or no", k, v)
}

// oneOf reads a keyword among choices (lower case); def when absent.
func (p *params) oneOf(k, def string, choices ...string) (string, error) {
	v, ok := p.values[k]
	if !ok {
		return def, nil
	}
	l := strings.ToLower(v)
	for _, c := range choices {
		if l == c {
			return c, nil
		}
	}
	return "", p.errf("%s=%q: want %s", k, v, strings.Join(choices, ", "))
}

// number reads an integer in [lo, hi]; def when absent.
func (p *params) number(k string, def, lo, hi int64) (int64, error) {
	v, ok := p.values[k]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, p.errf("%s=%q: want a number from %d to %d", k, v, lo, hi)
	}
	return n, nil
}

func (p *params) errf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	// Belt and braces: a key also typed into another parameter is not
	// shown either.
	for _, k := range append(p.multi["psk"], p.multi["auth1psk"]...) {
		if strings.TrimSpace(k) != "" {
			msg = strings.ReplaceAll(msg, k, "<key>")
		}
	}
	return errAt(p.cmd.File, p.cmd.Line, "%s %s: %s", p.cmd.Verb, p.cmd.Object, msg)
}
