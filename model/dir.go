package model

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// A policy can be a folder (-f /etc/swanmgr/policy.d/, as swanctl's
// conf.d): every *.toml file directly in it, in name order, each decoded
// on its own as a policy file and merged into one policy. Names stay
// unique across the files, [endpoint] and assign are written in one file,
// and a [[policy]] of the same name in several files is one policy whose
// rules are those of every file, in file order. Messages name the file
// and line of each.
//
// ReadFile gives a folder's files as one byte string, a bundle, so that
// everything that keeps or compares "the policy as read" (the record's
// fingerprint, the copy --confirm goes back to, the agent) keeps working
// unchanged; parse recognises it by its first bytes, a NUL, which no
// policy file may hold.

// bundleMagic begins a bundle: "\x00swanmgr policy folder\x00", then for
// each file its name, a NUL, its length in decimal, a NUL and its bytes.
const bundleMagic = "\x00swanmgr policy folder\x00"

// isBundle reports whether data is a folder's files, as ReadFile gives
// them.
func isBundle(data []byte) bool { return bytes.HasPrefix(data, []byte(bundleMagic)) }

// bundleFile is one file of a bundle.
type bundleFile struct {
	name string // base name in the folder
	data []byte
}

// makeBundle joins a folder's files.
func makeBundle(files []bundleFile) []byte {
	n := len(bundleMagic)
	for _, f := range files {
		n += len(f.name) + len(f.data) + 24
	}
	b := make([]byte, 0, n)
	b = append(b, bundleMagic...)
	for _, f := range files {
		b = append(b, f.name...)
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(len(f.data)), 10)
		b = append(b, 0)
		b = append(b, f.data...)
	}
	return b
}

// splitBundle is makeBundle's inverse; ok is false for bytes that are not
// a well-formed bundle.
func splitBundle(data []byte) (files []bundleFile, ok bool) {
	rest := data[len(bundleMagic):]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i <= 0 {
			return nil, false
		}
		name := string(rest[:i])
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, 0)
		if j <= 0 {
			return nil, false
		}
		size, err := strconv.Atoi(string(rest[:j]))
		rest = rest[j+1:]
		if err != nil || size < 0 || size > len(rest) || strings.ContainsAny(name, "/\x00") {
			return nil, false
		}
		files = append(files, bundleFile{name: name, data: rest[:size]})
		rest = rest[size:]
	}
	return files, len(files) > 0
}

// member is one file of a folder policy.
type member struct {
	path   string
	offset int // lines of the files before it: its line n is offset+n
	pos    *positions
}

// elemRef is where a merged array element came from: member m, its
// index i there (and for a rule, j, the rule's index in policy i).
type elemRef struct{ m, i, j int }

// sources maps a merged folder policy's key paths back to its files.
type sources struct {
	members  []member
	assign   int // member that sets assign; -1 none
	endpoint int // member with [endpoint]; -1 none
	lists    []elemRef
	actions  []elemRef
	policies []elemRef   // where each policy's first [[policy]] is
	rules    [][]elemRef // per merged policy, per rule
}

// line returns the line, in the folder's numbering, of an indexed key
// path of the merged policy; 0 when none.
func (s *sources) line(path string) int {
	head, rest, _ := strings.Cut(path, ".")
	name, idx := head, -1
	if k := strings.IndexByte(head, '['); k >= 0 && strings.HasSuffix(head, "]") {
		name = head[:k]
		if n, err := strconv.Atoi(head[k+1 : len(head)-1]); err == nil {
			idx = n
		}
	}
	at := func(m int, local string) int {
		if m < 0 || m >= len(s.members) {
			return 0
		}
		l := s.members[m].pos.line(local)
		if l == 0 {
			return 0
		}
		return s.members[m].offset + l
	}
	elem := func(refs []elemRef) (elemRef, bool) {
		if idx < 0 && len(refs) > 0 {
			return refs[0], true
		}
		if idx < 0 || idx >= len(refs) {
			return elemRef{}, false
		}
		return refs[idx], true
	}
	join := func(local, rest string) string {
		if rest == "" {
			return local
		}
		return local + "." + rest
	}
	switch name {
	case "assign":
		return at(s.assign, path)
	case "endpoint":
		return at(s.endpoint, path)
	case "filter_list", "filter_action":
		refs := s.lists
		if name == "filter_action" {
			refs = s.actions
		}
		r, ok := elem(refs)
		if !ok {
			return 0
		}
		return at(r.m, join(name+"["+strconv.Itoa(r.i)+"]", rest))
	case "policy":
		p, ok := elem(s.policies)
		if !ok {
			return 0
		}
		if idx < 0 {
			idx = 0
		}
		rhead, rrest, _ := strings.Cut(rest, ".")
		if strings.HasPrefix(rhead, "rule[") && strings.HasSuffix(rhead, "]") {
			j, err := strconv.Atoi(rhead[len("rule[") : len(rhead)-1])
			if err == nil && idx < len(s.rules) && j >= 0 && j < len(s.rules[idx]) {
				r := s.rules[idx][j]
				return at(r.m, join("policy["+strconv.Itoa(r.i)+"].rule["+strconv.Itoa(r.j)+"]", rrest))
			}
		}
		return at(p.m, join("policy["+strconv.Itoa(p.i)+"]", rest))
	}
	return 0
}

// locate turns a line in the folder's numbering into a file and its line.
func (s *sources) locate(line int) (string, int) {
	// The last file that begins before line: offsets ascend.
	k := sort.Search(len(s.members), func(i int) bool { return s.members[i].offset >= line }) - 1
	m := s.members[max(k, 0)]
	return m.path, line - m.offset
}

// PolicyFiles returns what data (as ReadFile gave it for path) holds of
// each file: for a folder, each of its files by path; for a file, itself.
func PolicyFiles(path string, data []byte) map[string][]byte {
	if !isBundle(data) {
		return map[string][]byte{path: data}
	}
	files, ok := splitBundle(data)
	if !ok {
		return map[string][]byte{path: data}
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		out[filepath.Join(path, f.name)] = f.data
	}
	return out
}

// IsFolder reports whether the policy was read from a folder of files.
func (f *File) IsFolder() bool { return f != nil && f.src != nil }

// Files are the policy's files: the one file, or a folder's files in
// order.
func (f *File) Files() []string {
	if f.src == nil {
		return []string{f.Path}
	}
	out := make([]string, len(f.src.members))
	for i, m := range f.src.members {
		out[i] = m.path
	}
	return out
}

// Locate returns the file and line a line number of the policy stands
// for: the lines of a folder's files are numbered one after the other
// (ResolvedRule.Line, ResolvedFilter.Line), and messages name the file
// itself. For one file, its path and line as they are.
func (f *File) Locate(line int) (string, int) {
	if f == nil {
		return "", line
	}
	if f.src == nil || line <= 0 {
		return f.Path, line
	}
	return f.src.locate(line)
}

// Problem is a Problem at a line of the policy (see Locate).
func (f *File) Problem(line int, where, msg string, warning bool) Problem {
	file, l := f.Locate(line)
	return Problem{File: file, Line: l, Where: where, Msg: msg, Warning: warning}
}

// line is the line of an indexed key path, in the numbering Locate reads.
func (f *File) line(path string) int {
	if f.src != nil {
		return f.src.line(path)
	}
	return f.pos.line(path)
}

// lineCount is the number of lines of a text (a last line without a
// newline counts).
func lineCount(b []byte) int { return bytes.Count(b, []byte{'\n'}) + 1 }

// parseFolder parses each file of a bundle on its own and merges them.
func parseFolder(dir string, data []byte, r *Reuse) (*File, Problems) {
	files, ok := splitBundle(data)
	if !ok {
		return nil, Problems{{File: dir, Msg: "cannot read the policy folder's files (a damaged copy)"}}
	}
	var (
		ps     Problems
		parsed = make([]*File, len(files))
		filePs = make([]Problems, len(files))
		failed bool
	)
	// The files are decoded on every CPU, as the pieces of a large file.
	eachOn(runtime.GOMAXPROCS(0), len(files), func() func(int) {
		return func(i int) {
			path := memberPath(dir, files[i].name)
			if isBundle(files[i].data) {
				filePs[i] = Problems{{File: path, Line: 1, Msg: "a policy file cannot hold a NUL byte"}}
				return
			}
			parsed[i], filePs[i] = parseMember(path, files[i].data, r)
		}
	})
	for i := range files {
		ps = append(ps, filePs[i]...)
		if parsed[i] == nil {
			failed = true
		}
	}
	if failed {
		return nil, ps
	}
	m := &File{Path: dir, dir: dir, src: &sources{assign: -1, endpoint: -1}}
	s := m.src
	// The merged lists are sized from the start (at 5,001 files, grown
	// as they were merged, they were a fifth of the merge's allocations).
	nLists, nActions, ruleCount := 0, 0, make(map[string]int, 1)
	for _, f := range parsed {
		nLists += len(f.FilterLists)
		nActions += len(f.FilterActions)
		for _, p := range f.Policies {
			ruleCount[p.Name] += len(p.Rules)
		}
	}
	if nLists > 0 {
		m.FilterLists, s.lists = make([]FilterList, 0, nLists), make([]elemRef, 0, nLists)
	}
	if nActions > 0 {
		m.FilterActions, s.actions = make([]FilterAction, 0, nActions), make([]elemRef, 0, nActions)
	}
	s.members = make([]member, 0, len(parsed))
	offset := 0
	for i, f := range parsed {
		s.members = append(s.members, member{path: f.Path, offset: offset, pos: f.pos})
		offset += lineCount(files[i].data)
	}
	memberLine := func(k int, path string) int { return s.members[k].pos.line(path) }
	policyIdx := map[string]int{}
	descAt := map[int]elemRef{} // merged policy -> where its description is
	for k, f := range parsed {
		if f.Assign != "" {
			if s.assign >= 0 && m.Assign != f.Assign {
				ps = append(ps, Problem{File: f.Path, Line: memberLine(k, "assign"),
					Msg: fmt.Sprintf("assign = %q, but %s:%d assigns %q: one file of the folder names the assigned policy", f.Assign, s.members[s.assign].path, memberLine(s.assign, "assign"), m.Assign)})
			} else if s.assign < 0 {
				m.Assign, s.assign = f.Assign, k
			}
		}
		if !endpointEmpty(f.Endpoint) {
			if s.endpoint >= 0 {
				ps = append(ps, Problem{File: f.Path, Line: memberLine(k, "endpoint"),
					Msg: fmt.Sprintf("[endpoint] is also written in %s:%d: one file of the folder describes this computer", s.members[s.endpoint].path, memberLine(s.endpoint, "endpoint"))})
			} else {
				m.Endpoint, s.endpoint = f.Endpoint, k
			}
		}
		for i, fl := range f.FilterLists {
			m.FilterLists = append(m.FilterLists, fl)
			s.lists = append(s.lists, elemRef{m: k, i: i})
		}
		for i, fa := range f.FilterActions {
			m.FilterActions = append(m.FilterActions, fa)
			s.actions = append(s.actions, elemRef{m: k, i: i})
		}
		var here map[string]bool // names of this file's policies (of two or more)
		if len(f.Policies) > 1 {
			here = make(map[string]bool, len(f.Policies))
		}
		for i, p := range f.Policies {
			at, seen := policyIdx[p.Name]
			// Two of one name in one file is the mistake it is in a
			// file alone: kept apart, for validation to report.
			if !seen || p.Name == "" || here[p.Name] {
				at = len(m.Policies)
				if p.Name != "" && !seen {
					policyIdx[p.Name] = at
				}
				head := p
				head.Rules = nil
				var refs []elemRef
				if n := ruleCount[p.Name]; n > 0 && p.Name != "" {
					head.Rules, refs = make([]Rule, 0, n), make([]elemRef, 0, n)
				}
				m.Policies = append(m.Policies, head)
				s.policies = append(s.policies, elemRef{m: k, i: i})
				s.rules = append(s.rules, refs)
				if p.Description != "" {
					descAt[at] = elemRef{m: k, i: i}
				}
			} else {
				mp := &m.Policies[at]
				if d, set := descAt[at]; set && p.Description != "" && p.Description != mp.Description {
					ps = append(ps, Problem{File: f.Path, Line: memberLine(k, fmt.Sprintf("policy[%d].description", i)),
						Msg: fmt.Sprintf("policy %q: description differs from the one in %s:%d: write a policy's own keys in one of its files", p.Name, s.members[d.m].path, memberLine(d.m, fmt.Sprintf("policy[%d].description", d.i)))})
				}
				if mp.Description == "" && p.Description != "" {
					mp.Description = p.Description
					descAt[at] = elemRef{m: k, i: i}
				}
				mp.DefaultResponseRule = mp.DefaultResponseRule || p.DefaultResponseRule
			}
			if here != nil {
				here[p.Name] = true
			}
			for j, r := range p.Rules {
				m.Policies[at].Rules = append(m.Policies[at].Rules, r)
				s.rules[at] = append(s.rules[at], elemRef{m: k, i: i, j: j})
			}
		}
	}
	// Like a file's unknown keys, what does not merge is reported beside
	// what validation finds in the rest.
	return m, ps
}

// memberPath is filepath.Join(dir, name) for a name of the folder's
// listing (no separator in it), made in one piece when dir is already
// clean, as it is read: Join cleans the result again (at 5,001 files, a
// fifth of a read's allocations).
func memberPath(dir, name string) string {
	if dir == "" || dir == "." || dir == string(filepath.Separator) || name == "." || name == ".." || filepath.Clean(dir) != dir {
		return filepath.Join(dir, name)
	}
	return dir + string(filepath.Separator) + name
}

// sortProblems orders problems by file (a folder's in name order) and
// line.
func (f *File) sortProblems(ps []Problem) {
	if len(ps) < 2 {
		return
	}
	rank := map[string]int{}
	for i, p := range f.Files() {
		rank[p] = i
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ri, rj := rank[ps[i].File], rank[ps[j].File]; ri != rj {
			return ri < rj
		}
		return ps[i].Line < ps[j].Line
	})
}
