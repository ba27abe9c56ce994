package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/diagnose"
	"github.com/swanmgr/swanmgr/vici"
)

// ruleState is the backoff of one rule's connection whose children should
// be up. One rule is one unit: its children share an IKE_SA and fail for
// the same reasons.
type ruleState struct {
	failures int
	next     time.Time // no initiate before
	running  bool
	reason   string // the last failure, as diagnose words it
	narrowed string // what the last look found wrong with installed SAs
}

// initResult is a finished initiate of a connection's down children.
type initResult struct {
	conn     string
	children []string // initiated
	gen      int
	failed   []string // children that did not come up
	reason   string   // why the first of them did not
}

// backoff is the wait after n consecutive failures: min·2^(n-1), at most max.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// startChildren lists, per connection, the children of the policy that
// charon should keep up by itself (start_action start): trap children
// charon negotiates on the first packet, and those with no start action
// are the peer's to start.
func startChildren(p *policy) map[string][]string {
	if p == nil {
		return nil
	}
	out := map[string][]string{}
	for _, c := range p.result.Conns {
		if c.Origin.Action != "negotiate" {
			continue
		}
		for _, ch := range c.Children {
			if c.Body.Child(ch.Name).Value("start_action") == "start" {
				out[c.Name] = append(out[c.Name], ch.Name)
			}
		}
	}
	return out
}

// backingOff reports whether a rule waits for its next initiate or runs
// one: SAs are listed at every check then.
func (a *Agent) backingOff() bool {
	for _, st := range a.rules {
		if st.running || !st.next.IsZero() {
			return true
		}
	}
	return false
}

// pruneRules forgets the backoff of connections the policy no longer has.
func (a *Agent) pruneRules() {
	want := startChildren(a.good)
	for name, st := range a.rules {
		if _, ok := want[name]; !ok && !st.running {
			delete(a.rules, name)
		}
	}
}

// keepUp initiates, in the background, the down children of rules whose
// children should be up and whose backoff has passed. A connection whose
// IKE_SA is still being negotiated (charon's own start action after a
// load, or the peer's initiate) is left to it.
func (a *Agent) keepUp(ctx context.Context, conn *Conn) {
	want := startChildren(a.good)
	if len(want) == 0 {
		return
	}
	sas, err := conn.Client.ListSAs(ctx, vici.SAFilter{})
	if err != nil {
		return // the next check finds out what is wrong
	}
	connecting := map[string]bool{}
	for _, sa := range sas {
		if sa.State != "ESTABLISHED" {
			connecting[sa.Name] = true
		}
		for _, ch := range sa.Children {
			if ch.State != "INSTALLED" {
				connecting[sa.Name] = true
			}
		}
	}
	now := a.cfg.Now()
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		st := a.rules[name]
		if st == nil {
			st = &ruleState{}
			a.rules[name] = st
		}
		var down, narrowed, narrowedKids []string
		rc := a.recordConn(name)
		for _, child := range want[name] {
			sa, ch, up := diagnose.FindChild(sas, name, child)
			if !up {
				down = append(down, child)
			} else if why := diagnose.Narrowed(rc, child, sa, ch); why != "" {
				narrowed = append(narrowed, child+": "+why)
				narrowedKids = append(narrowedKids, child)
			}
		}
		// An SA narrowed by the peer is up: initiating again would give the
		// same. Say so once, and again only when it changes.
		if n := strings.Join(narrowed, "; "); n != st.narrowed {
			if n != "" {
				label := a.rulesOf(name, narrowedKids)
				a.logf("%s %s up but does not carry all of its traffic: %s", label, isAre(label), n)
			}
			st.narrowed = n
		}
		if st.running {
			continue
		}
		if len(down) == 0 {
			if st.failures > 0 {
				label := a.rulesOf(name, want[name])
				a.logf("%s %s up again after %d failed %s", label, isAre(label), st.failures, plural(st.failures, "attempt", "attempts"))
			}
			*st = ruleState{narrowed: st.narrowed}
			continue
		}
		if connecting[name] || now.Before(st.next) {
			continue
		}
		if st.next.IsZero() && st.failures == 0 {
			// Down for the first time: give charon's own start action
			// (and a peer initiating towards us) one backoff step first.
			st.next = now.Add(a.cfg.InitiateMin)
			continue
		}
		st.running = true
		label := a.rulesOf(name, down)
		a.logf("%s should be up and %s not (%s): initiating", label, isAre(label), a.describeChildren(name, down))
		go a.initiate(ctx, conn, name, down, rc, a.gen)
	}
}

// initiate negotiates a connection's down children, one after the other
// (they share the IKE_SA the first one brings up), and reports on
// initDone. It runs on its own goroutine: it touches nothing of the Agent
// but initDone and the configuration.
func (a *Agent) initiate(ctx context.Context, conn *Conn, name string, children []string, rc assign.RecordConn, gen int) {
	r := initResult{conn: name, children: children, gen: gen}
	for i, child := range children {
		duplicate := false
		err := conn.Client.Initiate(ctx, vici.InitiateRequest{IKE: name, Child: child, Timeout: a.cfg.NegotiationTimeout}, func(l vici.LogLine) {
			if strings.Contains(l.Message, "due to existing duplicate") {
				duplicate = true
			}
		})
		why := ""
		switch {
		case err != nil && duplicate:
		case err != nil:
			why = diagnose.Failure(err, rc, child)
		}
		if why != "" {
			// The others would fail the same way (their IKE_SA did not
			// come up, or the peer's filters are off): try them next time.
			r.failed = children[i:]
			r.reason = fmt.Sprintf("%s: %s", child, why)
			break
		}
	}
	select {
	case a.initDone <- r:
	case <-ctx.Done():
	}
}

// initiated records a finished initiate: success resets the rule's
// backoff, a failure doubles it and is logged with its reason.
func (a *Agent) initiated(r initResult) {
	st := a.rules[r.conn]
	if st == nil {
		return
	}
	st.running = false
	if r.gen != a.gen {
		return // charon went away meanwhile: the next check starts afresh
	}
	rule := a.rulesOf(r.conn, r.children)
	if len(r.failed) == 0 {
		if st.failures > 0 {
			a.logf("%s established after %d failed %s", rule, st.failures, plural(st.failures, "attempt", "attempts"))
		} else {
			a.logf("%s established", rule)
		}
		*st = ruleState{narrowed: st.narrowed}
		return
	}
	st.failures++
	wait := backoff(st.failures, a.cfg.InitiateMin, a.cfg.InitiateMax)
	st.next = a.cfg.Now().Add(wait)
	what := "keeps failing"
	if st.failures == 1 {
		what = "failed"
	}
	st.reason = r.reason
	a.logf("%s %s (attempt %d, %d of its CHILD_SAs down): %s; next try in %v", rule, what, st.failures, len(r.failed), r.reason, wait)
}

// quiet reports whether an SA event of a connection is expected: the agent
// is initiating it or waits to, so its failed attempts are not news.
func (a *Agent) quiet(conn string) bool {
	st := a.rules[conn]
	return st != nil && (st.running || st.failures > 0)
}

// rulesOf names the rules of a connection's children (all of them when
// children is nil): `rule "A"` or `rules "A", "B"`. All negotiate rules to
// one peer share its connection.
func (a *Agent) rulesOf(conn string, children []string) string {
	c := a.good.conn(conn)
	if c == nil {
		return fmt.Sprintf("connection %s", conn)
	}
	var rules []string
	for _, ch := range c.Children {
		if children != nil && !slices.Contains(children, ch.Name) {
			continue
		}
		if r := fmt.Sprintf("%q", ch.RuleOf(c.Origin)); !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		rules = append(rules, fmt.Sprintf("%q", c.Origin.Rule))
	}
	if len(rules) == 1 {
		return "rule " + rules[0]
	}
	return "rules " + names(rules)
}

// isAre is "is" after one rule, "are" after several.
func isAre(label string) string {
	if strings.HasPrefix(label, "rules ") {
		return "are"
	}
	return "is"
}

// describeChildren names children with their filters.
func (a *Agent) describeChildren(conn string, children []string) string {
	summary := map[string]string{}
	if c := a.good.conn(conn); c != nil {
		for _, ch := range c.Children {
			summary[ch.Name] = ch.Summary
		}
	}
	parts := make([]string, len(children))
	for i, ch := range children {
		parts[i] = ch
		if s := summary[ch]; s != "" {
			parts[i] += " " + s
		}
	}
	return strings.Join(parts, ", ")
}

// recordConn is the connection as diagnose reads it (the record's form).
func (a *Agent) recordConn(name string) assign.RecordConn {
	c := a.good.conn(name)
	if c == nil {
		return assign.RecordConn{Name: name}
	}
	return assign.RecordConn{Name: c.Name, Origin: c.Origin, Children: c.Children, Body: c.Body}
}
