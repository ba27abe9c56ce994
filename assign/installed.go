package assign

import (
	"fmt"
	"sort"
	"strings"

	"github.com/swanmgr/swanmgr/render"
)

// NotInstalledError says charon loaded connections but did not install the
// policies of some of their children (a trap whose remote address is a DNS
// name that does not resolve, say): those rules do not hold although the
// apply sent them. The next apply loads them again instead of calling them
// unchanged.
type NotInstalledError struct {
	Children []string // `rule "R" (sm-r-1)`
}

func (e *NotInstalledError) Error() string {
	return fmt.Sprintf("the policy is loaded, but charon installed no policy for %s: those rules are not enforced (charon's log says why, e.g. \"installing trap failed, remote address unknown\" for a DNS name it cannot resolve); fix it and apply again",
		strings.Join(e.Children, ", "))
}

// checkInstalled asks charon which of the children just loaded with a
// start action of trap (kernel backend: negotiate traps, pass and drop
// shunts) have their policies installed.
func (a *applyRun) checkInstalled() (*NotInstalledError, map[string]bool) {
	if a.desired.Backend != render.Kernel {
		return nil, nil
	}
	var want []struct{ conn, child, rule string }
	for _, c := range a.p.Conns {
		if (c.Change != Added && c.Change != Changed) || c.New == nil {
			continue
		}
		for _, co := range c.New.Children {
			if c.New.Body.Child(co.Name).Value("start_action") == "trap" {
				want = append(want, struct{ conn, child, rule string }{c.Name, co.Name, co.RuleOf(c.Origin)})
			}
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	children := make([]string, len(want))
	for i, w := range want {
		children[i] = w.child
	}
	have, err := a.e.Daemon.Installed(a.ctx, children)
	if err != nil {
		a.rep.Warnings = append(a.rep.Warnings, fmt.Sprintf("could not check which policies charon installed: %v", err))
		return nil, nil
	}
	var missing []string
	bad := map[string]bool{}
	for _, w := range want {
		if !have[w.child] {
			missing = append(missing, fmt.Sprintf("rule %q (%s)", w.rule, w.child))
			bad[w.conn] = true
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	sort.Strings(missing)
	return &NotInstalledError{Children: missing}, bad
}
