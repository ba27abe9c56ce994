package model

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// cutIntoFolder cuts a policy text into the files of a folder: the text
// before the first array header, then one file per [[filter_list]],
// [[filter_action]], [[policy]] and [[policy.rule]] (a rule's file
// beginning with a [[policy]] header of its policy's name, as an operator
// writes one file per peer). ok is false for a text the cut could read
// otherwise (see splitText).
func cutIntoFolder(t *testing.T, text string) (files []bundleFile, ok bool) {
	t.Helper()
	head, chunks, ok := splitText(text, 1)
	if !ok {
		return nil, false
	}
	files = append(files, bundleFile{name: "0000-head.toml", data: []byte(text[:head])})
	policy := ""
	for i, c := range chunks {
		body := text[c.start:c.end]
		if c.rules {
			body = fmt.Sprintf("[[policy]]\nname = %q\n", policy) + body
		} else if strings.HasPrefix(body, "[[policy]]") {
			d, err := decodeWhole(body)
			if err != nil || len(d.f.Policies) != 1 {
				return nil, false
			}
			policy = d.f.Policies[0].Name
		}
		files = append(files, bundleFile{name: fmt.Sprintf("%04d.toml", i+1), data: []byte(body)})
	}
	return files, true
}

// lineText is line n (1-based) of text.
func lineText(text string, n int) string {
	lines := strings.Split(text, "\n")
	if n < 1 || n > len(lines) {
		return fmt.Sprintf("<no line %d>", n)
	}
	return strings.TrimSpace(lines[n-1])
}

// Every policy in the repository, cut into a folder of one file per
// filter list, filter action, policy and rule, validates to the same
// assignment as the file, or to the same problems; and every line the
// folder gives (rules, filters, problems) is, in its file, the line the
// file gives.
func TestFolderLikeTheFile(t *testing.T) {
	o := ValidateOptions{InsecureSecrets: true}
	cut, valid := 0, 0
	policies := repoPolicies(t)
	// And each with a mistake: a rule naming a filter list that is not
	// there, which every problem's line must survive too.
	for p, text := range repoPolicies(t) {
		if broken := strings.Replace(text, `filter_list = "`, `filter_list = "Nope `, 1); broken != text {
			policies[p+" (broken)"] = broken
		}
	}
	invalid := 0
	for name, text := range policies {
		p := strings.TrimSuffix(name, " (broken)")
		files, ok := cutIntoFolder(t, text)
		if !ok {
			continue
		}
		cut++
		dir := filepath.Dir(p)
		texts := map[string]string{p: text}
		for _, f := range files {
			texts[filepath.Join(dir, f.name)] = string(f.data)
		}
		at := func(file string, line int) string { return lineText(texts[file], line) }

		wf, wps := parse(p, []byte(text))
		ff, fps := parse(dir, makeBundle(files))
		if (wf == nil) != (ff == nil) {
			t.Errorf("%s: the file decodes %v, the folder %v (%v / %v)", p, wf != nil, ff != nil, wps, fps)
			continue
		}
		if wf == nil {
			continue
		}
		if !reflect.DeepEqual(wf.FilterLists, ff.FilterLists) || !reflect.DeepEqual(wf.FilterActions, ff.FilterActions) ||
			!reflect.DeepEqual(wf.Policies, ff.Policies) || wf.Assign != ff.Assign || !reflect.DeepEqual(wf.Endpoint, ff.Endpoint) {
			t.Errorf("%s: the folder merges into another policy than the file", p)
			continue
		}
		wa, _, werr := Validate(wf, o)
		fa, _, ferr := Validate(ff, o)
		if (werr == nil) != (ferr == nil) {
			t.Errorf("%s: the file validates with %v, the folder with %v", p, werr, ferr)
			continue
		}
		if werr != nil {
			invalid++
			// The same problems, each on the same line of text.
			describe := func(f *File, err error, whole bool) []string {
				var out []string
				for _, pr := range err.(Problems) {
					file, line := pr.File, pr.Line
					if whole {
						file = p
					}
					out = append(out, pr.Where+": "+pr.Msg+" @ "+at(file, line))
				}
				sort.Strings(out)
				return out
			}
			w, f := describe(wf, werr, true), describe(ff, ferr, false)
			// A duplicate's message names where the first is: another file.
			norm := func(s []string) []string {
				for i := range s {
					if k := strings.Index(s[i], "(first at "); k >= 0 {
						s[i] = s[i][:k]
					}
					if k := strings.Index(s[i], ", at "); k >= 0 {
						s[i] = s[i][:k]
					}
				}
				return s
			}
			if !reflect.DeepEqual(norm(w), norm(f)) {
				t.Errorf("%s: problems differ:\nfile:\n%s\nfolder:\n%s", p, strings.Join(w, "\n"), strings.Join(f, "\n"))
			}
			continue
		}
		valid++
		if len(wa.Rules) != len(fa.Rules) || !reflect.DeepEqual(wa.Endpoint, fa.Endpoint) || !reflect.DeepEqual(wa.Inputs, fa.Inputs) ||
			!reflect.DeepEqual(*wa.Policy, *fa.Policy) {
			t.Errorf("%s: the folder validates to another assignment", p)
			continue
		}
		for i := range wa.Rules {
			wr, fr := wa.Rules[i], fa.Rules[i]
			if wl, fl := at(p, wr.Line), at(ff.Locate(fr.Line)); wl != fl {
				t.Errorf("%s: rule %q is at %q in the file, %q in the folder", p, wr.Name, wl, fl)
			}
			if len(wr.Filters) != len(fr.Filters) {
				t.Errorf("%s: rule %q has %d filters in the file, %d in the folder", p, wr.Name, len(wr.Filters), len(fr.Filters))
				continue
			}
			for j := range wr.Filters {
				if wl, fl := at(p, wr.Filters[j].Line), at(ff.Locate(fr.Filters[j].Line)); wl != fl {
					t.Errorf("%s: rule %q filter %d is at %q in the file, %q in the folder", p, wr.Name, j+1, wl, fl)
				}
				wr.Filters[j].Line, fr.Filters[j].Line = 0, 0
			}
			wr.Line, fr.Line = 0, 0
			if !reflect.DeepEqual(wr, fr) {
				t.Errorf("%s: rule %q resolves otherwise in the folder", p, wr.Name)
			}
		}
	}
	t.Logf("%d policies cut into folders, %d of them valid, %d invalid alike", cut, valid, invalid)
	if cut < 40 || valid < 10 || invalid < 10 {
		t.Errorf("only %d policies cut, %d valid, %d invalid", cut, valid, invalid)
	}
}

// memberPath is filepath.Join for the names of a folder's listing.
func TestMemberPathAsJoin(t *testing.T) {
	for _, dir := range []string{"", "/", ".", "..", "policy.d", "policy.d/", "./policy.d", "/etc/swanmgr/policy.d", "/etc//swanmgr/../policy.d/", "a/./b"} {
		for _, name := range []string{"00-base.toml", "peer 1.toml", ".toml", "..toml", ".", ".."} {
			if got, want := memberPath(dir, name), filepath.Join(dir, name); got != want {
				t.Errorf("memberPath(%q, %q) = %q, filepath.Join %q", dir, name, got, want)
			}
		}
	}
}

// Peers lists a rule's peers once each, in the order of its filters, with
// few filters as with many.
func TestPeersOnceInOrder(t *testing.T) {
	for _, n := range []int{1, 3, 8, 9, 40} {
		r := ResolvedRule{Action: ResolvedAction{Action: Negotiate}}
		var want []string
		for i := range n {
			h := fmt.Sprintf("192.0.2.%d", (i*7)%5+1)
			a := Addr{Kind: AddrHost, Prefix: netip.MustParsePrefix(h + "/32")}
			r.Filters = append(r.Filters, ResolvedFilter{Src: Addr{Kind: AddrMe}, Dst: a})
			if !slices.Contains(want, h) {
				want = append(want, h)
			}
		}
		if got := Peers(r); !slices.Equal(got, want) {
			t.Errorf("%d filters: peers %v, want %v", n, got, want)
		}
	}
}
