package agent

import (
	"context"
	"strings"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/diagnose"
	"github.com/swanmgr/swanmgr/vici"
)

// childKey names one child config of one connection.
type childKey struct{ conn, child string }

// childState is the backoff of one child that should be up.
type childState struct {
	failures int
	next     time.Time // no initiate before
	running  bool
	reason   string // the last failure, as diagnose words it
}

// initResult is a finished initiate.
type initResult struct {
	key    childKey
	gen    int
	err    error
	reason string // set when err is, or when the SA came up narrowed
}

// backoff is the wait after n consecutive failures: min·2^(n-1), at most max.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// startChildren lists the children of the policy that charon should keep
// up by itself (start_action start): with trap children charon negotiates
// on the first packet, and those with no start action are the peer's to
// start.
func startChildren(p *policy) []childKey {
	if p == nil {
		return nil
	}
	var out []childKey
	for _, c := range p.result.Conns {
		if c.Origin.Action != "negotiate" {
			continue
		}
		for _, ch := range c.Children {
			if c.Body.Child(ch.Name).Value("start_action") == "start" {
				out = append(out, childKey{c.Name, ch.Name})
			}
		}
	}
	return out
}

// backingOff reports whether a child waits for its next initiate or runs
// one: its SAs are listed at every check then.
func (a *Agent) backingOff() bool {
	for _, st := range a.children {
		if st.running || !st.next.IsZero() {
			return true
		}
	}
	return false
}

// pruneChildren forgets the backoff of children the policy no longer has.
func (a *Agent) pruneChildren() {
	want := map[childKey]bool{}
	for _, k := range startChildren(a.good) {
		want[k] = true
	}
	for k, st := range a.children {
		if !want[k] && !st.running {
			delete(a.children, k)
		}
	}
}

// keepUp initiates, in the background, the children that should be up,
// are down, and whose backoff has passed. A child whose IKE_SA is still
// being negotiated (charon's own start action after a load) is left to it.
func (a *Agent) keepUp(ctx context.Context, conn *Conn) {
	keys := startChildren(a.good)
	if len(keys) == 0 {
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
	for _, k := range keys {
		st := a.children[k]
		if st == nil {
			st = &childState{}
			a.children[k] = st
		}
		if _, _, up := diagnose.FindChild(sas, k.conn, k.child); up {
			if st.running {
				continue
			}
			if st.failures > 0 {
				a.logf("rule %q: %s is up again after %d failed %s", a.ruleOf(k), k.child, st.failures, plural(st.failures, "attempt", "attempts"))
			}
			*st = childState{}
			continue
		}
		if st.running || connecting[k.conn] || now.Before(st.next) {
			continue
		}
		if st.next.IsZero() && st.failures == 0 {
			// Down for the first time: give charon's own start action
			// (and a peer initiating towards us) one backoff step first.
			st.next = now.Add(a.cfg.InitiateMin)
			continue
		}
		st.running = true
		a.logf("rule %q: %s (%s) should be up and is not: initiating", a.ruleOf(k), k.child, a.summaryOf(k))
		go a.initiate(ctx, conn, k, a.recordConn(k), a.gen)
	}
}

// initiate negotiates one child and reports on initDone.
// It runs on its own goroutine: it touches nothing of the Agent but
// initDone.
func (a *Agent) initiate(ctx context.Context, conn *Conn, k childKey, rc assign.RecordConn, gen int) {
	r := initResult{key: k, gen: gen}
	duplicate := false
	err := conn.Client.Initiate(ctx, vici.InitiateRequest{IKE: k.conn, Child: k.child, Timeout: a.cfg.NegotiationTimeout}, func(l vici.LogLine) {
		if strings.Contains(l.Message, "due to existing duplicate") {
			duplicate = true
		}
	})
	switch {
	case err != nil && duplicate:
	case err != nil:
		r.err, r.reason = err, diagnose.Failure(err, rc, k.child)
	default:
		if sas, lerr := conn.Client.ListSAs(ctx, vici.SAFilter{IKE: k.conn}); lerr == nil {
			if sa, ch, ok := diagnose.FindChild(sas, k.conn, k.child); ok {
				r.reason = diagnose.Narrowed(rc, k.child, sa, ch)
			}
		}
	}
	select {
	case a.initDone <- r:
	case <-ctx.Done():
	}
}

// initiated records a finished initiate: success resets the child's
// backoff, a failure doubles it and is logged with its reason.
func (a *Agent) initiated(r initResult) {
	st := a.children[r.key]
	if st == nil {
		return
	}
	st.running = false
	if r.gen != a.gen {
		return // charon went away meanwhile: the next check starts afresh
	}
	if r.err == nil && r.reason == "" {
		if st.failures > 0 {
			a.logf("rule %q: %s established after %d failed %s", a.ruleOf(r.key), r.key.child, st.failures, plural(st.failures, "attempt", "attempts"))
		} else {
			a.logf("rule %q: %s established", a.ruleOf(r.key), r.key.child)
		}
		*st = childState{}
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
	a.logf("rule %q: %s %s (attempt %d): %s; next try in %v", a.ruleOf(r.key), r.key.child, what, st.failures, r.reason, wait)
}

func (a *Agent) ruleOf(k childKey) string {
	if c := a.good.conn(k.conn); c != nil {
		return c.Origin.Rule
	}
	return k.conn
}

func (a *Agent) summaryOf(k childKey) string {
	if c := a.good.conn(k.conn); c != nil {
		for _, ch := range c.Children {
			if ch.Name == k.child {
				return ch.Summary
			}
		}
	}
	return k.child
}

// recordConn is the connection as diagnose reads it (the record's form).
func (a *Agent) recordConn(k childKey) assign.RecordConn {
	c := a.good.conn(k.conn)
	if c == nil {
		return assign.RecordConn{Name: k.conn}
	}
	return assign.RecordConn{Name: c.Name, Origin: c.Origin, Children: c.Children, Body: c.Body}
}
