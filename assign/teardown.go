package assign

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// target is one SA a change tears down: the whole IKE_SA, or only the
// CHILD_SAs listed in SA.Children.
type target struct {
	SA    LiveSA
	Whole bool
}

// targets returns the SAs, among those live, that the change of c tears
// down: every SA of a removed connection (also when charon no longer has
// the connection: a rule that is gone must not keep running), every SA of
// a connection whose IKE settings changed, else the CHILD_SAs of changed
// children. charon's reload keeps established SAs of trap children with
// their old settings; a rule that changed must not keep running the old
// way. A connection charon lacked (Restore) and loads again has no SA of
// its own settings to replace. Plan prints these; apply terminates them.
func (c ConnPlan) targets(sas []LiveSA) []target {
	var out []target
	for _, sa := range sas {
		if sa.Conn != c.Name {
			continue
		}
		switch {
		case c.Change == Removed || (c.Change == Changed && c.IKEChanged && !c.Restore):
			out = append(out, target{SA: sa, Whole: true})
		case c.Change == Changed && !c.Restore:
			t := sa
			t.Children = nil
			for _, ch := range sa.Children {
				if contains(c.ChangedChildren, ch.Name) {
					t.Children = append(t.Children, ch)
				}
			}
			if len(t.Children) > 0 {
				out = append(out, target{SA: t})
			}
		}
	}
	return out
}

func (p *Plan) needsTeardown() bool { return len(p.teardownQueries()) > 0 }

// teardownQueries ask for the SAs the change may tear down (those targets
// can return): the IKE_SAs of removed connections and of those whose IKE
// settings changed, whole; of a connection whose children changed, those
// children's. Only they need listing. Never nil (nil lists every SA).
func (p *Plan) teardownQueries() []SAQuery {
	out := []SAQuery{}
	for _, c := range p.Conns {
		switch {
		case c.Change == Removed || (c.Change == Changed && c.IKEChanged && !c.Restore):
			out = append(out, SAQuery{Conn: c.Name})
		case c.Change == Changed && !c.Restore:
			for _, ch := range c.ChangedChildren {
				out = append(out, SAQuery{Conn: c.Name, Child: ch})
			}
		}
	}
	return out
}

// TeardownError says SAs of changed or removed rules could not be torn
// down: those rules still run with their old settings (or at all). The
// record marks their connections, so that the next apply loads them again
// and tears those SAs down again (see retryTeardown).
type TeardownError struct {
	Failed []string // "rule \"X\": IKE_SA #9: <reason>"

	// retry names, by connection, the children whose CHILD_SAs stayed;
	// "" stands for a whole IKE_SA.
	retry map[string][]string
}

func (e *TeardownError) addRetry(conn, child string) {
	if e.retry == nil {
		e.retry = map[string][]string{}
	}
	if !contains(e.retry[conn], child) {
		e.retry[conn] = append(e.retry[conn], child)
	}
}

func (e *TeardownError) Error() string {
	return fmt.Sprintf("the policy is loaded, but %d SAs of changed or removed rules could not be torn down, so those rules still run the old way: %s; terminate them with swanmgr terminate --rule or apply again",
		len(e.Failed), strings.Join(e.Failed, "; "))
}

// teardownTimeout bounds all terminates of one apply, on a context of
// their own: an apply interrupted after the new policy is in place must
// still take the old SAs down.
const teardownBudget = 30 * time.Second

// teardown terminates the targets, among the SAs listed before the change
// (never one the new settings brought up), of every connection of p. An
// SA that is gone by the time it is terminated (unloading its connection
// closed it) counts as torn down; one that stays is reported.
func (e *Engine) teardown(ctx context.Context, p *Plan, before []LiveSA, rep *Report) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownBudget)
	defer cancel()
	type failure struct {
		what  string
		sa    LiveSA
		id    uint64
		child bool // id is a CHILD_SA's (sa has that one child)
		err   error
	}
	var failed []failure
	// retryOf is what the record marks to tear down again: a child, or ""
	// for a whole IKE_SA.
	retryOf := func(f failure) string {
		if f.child {
			return f.sa.Children[0].Name
		}
		return ""
	}
	for _, c := range p.Conns {
		for _, t := range c.targets(before) {
			if t.Whole {
				if err := e.Daemon.TerminateIKE(ctx, t.SA.UniqueID); err != nil {
					failed = append(failed, failure{what: ruleWhat(c), sa: t.SA, id: t.SA.UniqueID, err: err})
					continue
				}
				rep.Terminated = append(rep.Terminated, t.SA)
				continue
			}
			done := t.SA
			done.Children = nil
			for _, ch := range t.SA.Children {
				if err := e.Daemon.TerminateChild(ctx, ch.UniqueID); err != nil {
					one := t.SA
					one.Children = []LiveChild{ch}
					failed = append(failed, failure{what: ruleWhat(c), sa: one, id: ch.UniqueID, child: true, err: err})
					continue
				}
				done.Children = append(done.Children, ch)
			}
			if len(done.Children) > 0 {
				rep.Terminated = append(rep.Terminated, done)
			}
		}
	}
	if len(failed) == 0 {
		return nil
	}
	// A terminate fails when the SA is already gone: look again.
	var again []string
	for _, f := range failed {
		if !contains(again, f.sa.Conn) {
			again = append(again, f.sa.Conn)
		}
	}
	now, err := e.Daemon.LiveSAs(ctx, ofConns(again))
	if err != nil {
		te := &TeardownError{}
		for _, f := range failed {
			te.Failed = append(te.Failed, fmt.Sprintf("%s: SA #%d: %v", f.what, f.id, f.err))
			te.addRetry(f.sa.Conn, retryOf(f))
		}
		te.Failed = append(te.Failed, fmt.Sprintf("listing SAs afterwards: %v", err))
		return te
	}
	// charon numbers IKE_SAs and CHILD_SAs apart: IKE_SA #4 and CHILD_SA
	// #4 are different SAs.
	aliveIKE, aliveChild := map[uint64]bool{}, map[uint64]bool{}
	for _, sa := range now {
		aliveIKE[sa.UniqueID] = true
		for _, ch := range sa.Children {
			aliveChild[ch.UniqueID] = true
		}
	}
	var te TeardownError
	for _, f := range failed {
		child := f.child
		if child && !aliveChild[f.id] || !child && !aliveIKE[f.id] {
			rep.Terminated = append(rep.Terminated, f.sa)
			continue
		}
		kind := "IKE_SA"
		if child {
			kind = "CHILD_SA " + f.sa.Children[0].Name
		}
		msg := fmt.Sprintf("%s: %s #%d: %v", f.what, kind, f.id, f.err)
		rep.Warnings = append(rep.Warnings, "tearing down "+msg)
		te.Failed = append(te.Failed, msg)
		te.addRetry(f.sa.Conn, retryOf(f))
	}
	if len(te.Failed) == 0 {
		return nil
	}
	return &te
}
