package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Filters checked on every CPU are reported as checked one by one: the
// same problems, in list order, with their lines, and none for the
// filters of a list refused for its name (a duplicate).
func TestFiltersCheckedInParallelAsInTurn(t *testing.T) {
	var b strings.Builder
	b.WriteString("assign = \"P\"\n[endpoint]\naddresses = [\"10.0.0.1\"]\n[[filter_action]]\nname = \"FA\"\naction = \"negotiate\"\n")
	const n = 700
	for i := range n {
		name, dst, port := fmt.Sprintf("L%d", i), fmt.Sprintf("10.%d.%d.2", i/256, i%256), "22"
		switch i {
		case 3, 64, 65, 401:
			dst = "10.0.0.300" // not an address
		case 128:
			port = "70000"
		case 650:
			name, port = "L7", "-1" // a duplicate name: its filter's problem is not reported
		case 699:
			name = ""
		}
		fmt.Fprintf(&b, "[[filter_list]]\nname = %q\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = %q\n  protocol = \"tcp\"\n  destination_port = %s\n", name, dst, port)
	}
	b.WriteString("[[policy]]\nname = \"P\"\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "  [[policy.rule]]\n  filter_list = \"L%d\"\n  filter_action = \"FA\"\n  authentication = [ { method = \"kerberos\" } ]\n", i)
	}
	problems := func(from int) Problems {
		t.Helper()
		defer func(was int) { parallelFilters = was }(parallelFilters)
		parallelFilters = from
		_, _, err := ParseValidate("p.toml", []byte(b.String()), ValidateOptions{})
		ps, ok := err.(Problems)
		if !ok {
			t.Fatalf("want problems, got %v", err)
		}
		return ps
	}
	inTurn, parallel := problems(1<<30), problems(0)
	if !slices.Equal(inTurn, parallel) {
		t.Errorf("checked in parallel:\n%v\nchecked in turn:\n%v", parallel, inTurn)
	}
	var lists []string
	for _, p := range inTurn {
		if strings.HasPrefix(p.Where, "filter_list") {
			lists = append(lists, p.Where)
		}
	}
	want := []string{`filter_list "L3" filter 1`, `filter_list "L64" filter 1`, `filter_list "L65" filter 1`, `filter_list "L128" filter 1`, `filter_list "L401" filter 1`, `filter_list "L7"`, "filter_list 700"}
	if !slices.Equal(lists, want) {
		t.Errorf("filter lists with problems: %q, want %q", lists, want)
	}
}
