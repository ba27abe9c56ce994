package guard

import (
	"fmt"
	"strings"
	"testing"
)

func TestBatchElements(t *testing.T) {
	in := `add table inet swanmgr
add set inet swanmgr k-a { type ipv4_addr ; }
add element inet swanmgr k-a { 10.0.0.1 }
add element inet swanmgr v-a { 10.0.0.1 : continue }
add element inet swanmgr d-a { 10.0.0.1 comment "r-x" }
add element inet swanmgr k-a { 10.0.0.2 }
add element inet swanmgr v-a { 10.0.0.2 : goto b-a }
add element inet swanmgr d-a { 10.0.0.2 comment "r, y }" }
add rule inet swanmgr c ip daddr @k-a drop
delete element inet swanmgr k-a { 10.0.0.1 }
add element inet swanmgr k-a { 10.0.0.1 }
delete element inet swanmgr k-a { 10.0.0.3 }
add element inet swanmgr k-b { 10.0.0.9 }
add element inet swanmgr k-a { }
add element inet swanmgr k-a 10.0.0.4
`
	want := `add table inet swanmgr
add set inet swanmgr k-a { type ipv4_addr ; }
add element inet swanmgr k-a { 10.0.0.1, 10.0.0.2 }
add element inet swanmgr v-a { 10.0.0.1 : continue, 10.0.0.2 : goto b-a }
add element inet swanmgr d-a { 10.0.0.1 comment "r-x", 10.0.0.2 comment "r, y }" }
add rule inet swanmgr c ip daddr @k-a drop
delete element inet swanmgr k-a { 10.0.0.1 }
add element inet swanmgr k-a { 10.0.0.1 }
delete element inet swanmgr k-a { 10.0.0.3 }
add element inet swanmgr k-b { 10.0.0.9 }
add element inet swanmgr k-a { }
add element inet swanmgr k-a 10.0.0.4
`
	if got := BatchElements(in); got != want {
		t.Errorf("batched:\n%s\nwant:\n%s", got, want)
	}
	// No element commands, or no final newline: as it was.
	for _, s := range []string{"", "add table inet swanmgr\n", "add element inet swanmgr k-a { 1 }"} {
		if got := BatchElements(s); got != s {
			t.Errorf("%q batched to %q", s, got)
		}
	}
}

// At most maxBatch elements a command, in their order.
func TestBatchElementsBounded(t *testing.T) {
	var in strings.Builder
	n := 2*maxBatch + 5
	for i := range n {
		fmt.Fprintf(&in, "add element inet swanmgr k-a { %d }\n", i)
	}
	got := BatchElements(in.String())
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d commands for %d elements", len(lines), n)
	}
	var all []string
	for _, l := range lines {
		body := strings.TrimSuffix(strings.TrimPrefix(l, "add element inet swanmgr k-a { "), " }")
		all = append(all, strings.Split(body, ", ")...)
	}
	for i, e := range all {
		if e != fmt.Sprint(i) {
			t.Fatalf("element %d is %q", i, e)
		}
	}
	if len(all) != n {
		t.Fatalf("%d elements, want %d", len(all), n)
	}
}
