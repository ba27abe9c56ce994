package render

import (
	"fmt"
	"strconv"

	"github.com/swanmgr/swanmgr/model"
)

// shunt renders a permit or block rule: one connection without IKE, one
// pass or drop child per filter, installed when loaded.
func (r *renderer) shunt(rule model.ResolvedRule) {
	where := rule.Where(r.a.Policy)
	if r.o.Backend == LibIPsec {
		if rule.Action.Action == model.Block && rule.Action.Guard {
			// libipsec ignores drop policies; the guard drops instead.
			return
		}
		what := "permit rules are"
		if rule.Action.Action == model.Block {
			what = "block rules with guard = false are"
		}
		r.errf(rule.Line, where, "%s not supported on the libipsec backend: it silently ignores pass and drop policies; use the kernel backend (--ipsec-backend kernel)", what)
		return
	}
	name := NamePrefix + r.ruleSlug(rule)
	if !r.claimOf(name, claimed{"connection", where}, rule.Line, where) {
		return
	}
	mode := "pass"
	if rule.Action.Action == model.Block {
		mode = "drop"
	}
	conn := Conn{
		Name: name,
		Origin: Origin{Policy: r.a.Policy.Name, Rule: rule.Name, RuleIndex: rule.Index, FilterList: rule.List.Name,
			Action: string(rule.Action.Action), Line: rule.Line},
		Comment: fmt.Sprintf("rule %q: filter list %q, filter action %q (%s)", rule.Name, rule.List.Name, rule.Action.Name, rule.Action.Action),
	}
	body := &Section{}
	children := body.Sub("children", "")
	for _, f := range rule.Filters {
		child := fmt.Sprintf("%s-%d", name, f.Index+1)
		if !r.claimOf(child, claimed{"child", where}, f.Line, where) {
			continue
		}
		local, remote, lp, rp := orient(f)
		summary := f.Summary()
		cs := children.Sub(child, fmt.Sprintf("filter %d: %s", f.Index+1, summary))
		cs.SetList("local_ts", r.selectors(local, remote, f, lp, tsShunt)...)
		cs.SetList("remote_ts", r.selectors(remote, local, f, rp, tsShunt)...)
		cs.Set("mode", mode)
		cs.Set("start_action", "trap")
		r.iface(cs, rule.Network)
		cs.Set("priority", strconv.Itoa(r.priority(f, rule)))
		conn.Children = append(conn.Children, ChildOrigin{Name: child, FilterIndex: f.Index, Line: f.Line, Summary: summary})
	}
	if !noFreeze {
		body.Freeze()
	}
	conn.Body = body
	r.res.Conns = append(r.res.Conns, conn)
}

// noFreeze, in tests, leaves rendered settings trees (TestFrozenAsTree).
var noFreeze bool

// defaultResponse renders Windows' default response rule: a responder-only
// connection for any peer, host to host, with the authentication and
// security of the policy's first negotiate rule.
func (r *renderer) defaultResponse() {
	var first *model.ResolvedRule
	for i := range r.a.Rules {
		if r.a.Rules[i].Action.Action == model.Negotiate && len(r.a.Rules[i].Auth) > 0 {
			first = &r.a.Rules[i]
			break
		}
	}
	where := fmt.Sprintf("policy %q", r.a.Policy.Name)
	if first == nil {
		r.errf(0, where, "default_response_rule = true needs a negotiate rule to take its authentication from")
		return
	}
	name := NamePrefix + "default-response"
	if !r.claim(name, "the default response rule", 0, where) {
		return
	}
	conn := Conn{
		Name:    name,
		Origin:  Origin{Policy: r.a.Policy.Name, Rule: DefaultResponseRule, RuleIndex: -1, Action: string(model.Negotiate), Peer: "%any"},
		Comment: fmt.Sprintf("default response rule: any peer, authentication and security of rule %q", first.Name),
	}
	body := &Section{}
	r.ikeSettings(body, "%any", first.Auth)
	children := body.Sub("children", "")
	child := name + "-1"
	r.responseChild(children.Sub(child, "any peer, host to host"), first.Action)
	conn.Children = append(conn.Children, ChildOrigin{Name: child, FilterIndex: -1, Summary: "me ↔ any peer"})
	conn.Body = body
	r.res.Conns = append(r.res.Conns, conn)
	r.authMaterial(name, "%any", first.Auth, 0, where)

	// A peer with a connection of its own never reaches sm-default-response:
	// charon selects the peer's connection by its address and identity and
	// looks CHILD_SAs up only among its children. So each peer connection
	// gets the default response as a child too, for its traffic that no
	// rule covers (charon prefers a child whose selectors match exactly).
	for i := range r.res.Conns {
		c := &r.res.Conns[i]
		if c.Origin.Action != string(model.Negotiate) || c.Origin.RuleIndex < 0 || isRange(c.Origin.Peer) {
			continue
		}
		kids := c.Body.edit("children")
		if kids == nil {
			continue
		}
		child := c.Name + "-default-response"
		if !r.claim(child, "the default response rule", 0, where) {
			continue
		}
		r.responseChild(kids.Sub(child, "default response rule: this peer's traffic that no rule covers, host to host"), first.Action)
		c.Children = append(c.Children, ChildOrigin{Name: child, FilterIndex: -1, Summary: "me ↔ " + c.Origin.Peer + " (default response)", Rule: DefaultResponseRule, RuleIndex: -1})
	}
}

// DefaultResponseRule is the rule name of the default response rule's
// connection and children.
const DefaultResponseRule = "<Dynamic> (default response)"

// responseChild writes a default response child: host to host, answered
// only (start_action none), with the security of act.
func (r *renderer) responseChild(cs *Section, act model.ResolvedAction) {
	cs.SetList("local_ts", "dynamic")
	cs.SetList("remote_ts", "dynamic")
	mode := "transport"
	if r.o.Backend == LibIPsec {
		mode = "tunnel"
	}
	cs.Set("mode", mode)
	cs.Set("start_action", "none")
	if len(act.AHInteg) > 0 {
		cs.SetList("ah_proposals", proposal(act.AHInteg, nil, act.PFSGroup))
	} else {
		cs.SetList("esp_proposals", proposal(act.ESPEnc, act.ESPInteg, act.PFSGroup))
	}
}
