package assign

import (
	"context"
	"fmt"
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

const twoRulesTmpl = `
[endpoint]
addresses = ["172.16.98.231"]

[[filter_list]]
name = "Abczz"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "tcp"
  destination_port = 6667
[[filter_list]]
name = "Syslog"
  [[filter_list.filter]]
  source = "me"
  destination = "172.31.67.244"
  protocol = "udp"
  destination_port = %d

[[filter_action]]
name = "Encrypt"
action = "negotiate"

[[policy]]
name = "P"
  [[policy.rule]]
  name = "Abczz"
  filter_list = "Abczz"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret = "a-long-lab-only-key-for-bob" } ]
  [[policy.rule]]
  name = "Syslog"
  filter_list = "Syslog"
  filter_action = "Encrypt"
  authentication = [ { method = "psk", secret = "a-long-lab-only-key-for-bob" } ]
`

func renderTwoRules(t *testing.T, port int) *render.Result {
	t.Helper()
	return renderText(t, fmt.Sprintf(twoRulesTmpl, port))
}

// Two rules to one peer share a connection: the plan still speaks per
// rule, and a change to one leaves the other unchanged.
func TestPlanPerRuleInSharedConnection(t *testing.T) {
	ctx := context.Background()
	d := newFake()
	e := newEngine(t, d)
	if _, err := e.Apply(ctx, renderTwoRules(t, 514), Inputs{}); err != nil {
		t.Fatal(err)
	}
	p, err := e.Plan(ctx, renderTwoRules(t, 515))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Change{}
	for _, r := range p.Rules {
		got[r.Rule] = r.Change
	}
	if len(got) != 2 || got["Abczz"] != Unchanged || got["Syslog"] != Changed {
		t.Fatalf("rules %v; want Abczz unchanged and Syslog changed", got)
	}
}
