package assign

import (
	"context"
	"fmt"
	"runtime"
	"runtime/trace"
	"sort"
	"strings"
	"sync"

	"github.com/swanmgr/swanmgr/render"
)

// Change says what happens to a connection or rule.
type Change string

// Changes.
const (
	Added     Change = "added"
	Changed   Change = "changed"
	Removed   Change = "removed"
	Unchanged Change = "unchanged"
)

// ConnPlan is what happens to one connection.
type ConnPlan struct {
	Name   string
	Change Change
	Origin render.Origin
	New    *render.Conn // nil when removed
	Hash   string       // New's hash
	Old    *RecordConn  // nil when added
	// Restore: the daemon lacks a connection the record lists (charon
	// restarted or someone unloaded it). For an added or changed
	// connection that means it is loaded again; for a removed one that
	// there is nothing to unload (its SAs are still torn down).
	Restore bool
	// ChangedChildren are the children whose settings changed or that
	// went away; IKEChanged means every child is re-applied.
	ChangedChildren []string
	IKEChanged      bool
	// Drift: charon's copy is not what swanmgr loaded (replaced over VICI
	// by someone else): it is loaded again and its SAs torn down.
	Drift bool
}

// RulePlan is what happens to one rule: the sum of its connections.
type RulePlan struct {
	Rule     string
	Policy   string
	Change   Change
	Conns    []ConnPlan
	Teardown []LiveSA // live SAs that the change tears down (plan only)
	// Drift: charon's copy of a connection of the rule was replaced by
	// someone else; the rule is loaded again.
	Drift bool
}

// Plan is what Apply would do.
type Plan struct {
	Socket  string
	Policy  string
	Conns   []ConnPlan
	Rules   []RulePlan
	Secrets []render.Secret // to load (load-shared replaces same ids in place)
	// KeptSecrets are secrets charon has with the same value: not sent.
	KeptSecrets []render.Secret
	Stale       []string // secret ids swanmgr loaded before and no longer needs
	// LiveSecrets are the secret ids charon has now.
	LiveSecrets map[string]bool
	Previous    *Record
	Desired     *render.Result
	// Guard is what happens to the nftables guard (filled by
	// Engine.Plan).
	Guard GuardPlan
	// Warnings are things an apply leaves alone on purpose (a pending
	// name charon now has with other settings).
	Warnings []string
	// Unverified counts the unchanged connections whose copy in charon
	// was not compared with what swanmgr loaded, only found by name: over
	// CompareAllUpTo connections without Engine.Refresh.
	Unverified int
}

// GuardPlan is what an apply does to the nftables guard.
type GuardPlan struct {
	// Guarded is the number of rules the new policy's guard enforces
	// (negotiate and block rules), Entries its set entries.
	Guarded, Entries int
	// Added and Removed count entries that change.
	Added, Removed int
	// Drift: the live table is not what swanmgr installed last (flushed,
	// edited, or never installed): apply replaces it whole.
	Drift bool
	// Remove: the new policy has no guard; the old one goes.
	Remove bool
}

// Pending reports whether the guard would change.
func (g GuardPlan) Pending() bool { return g.Added > 0 || g.Removed > 0 || g.Drift || g.Remove }

// Pending reports whether applying would change anything in charon.
func (p *Plan) Pending() bool {
	for _, c := range p.Conns {
		if c.Change != Unchanged {
			return true
		}
	}
	return len(p.Stale) > 0 || len(p.Secrets) > 0 || p.Guard.Pending()
}

// ConflictError reports names charon has that swanmgr did not load.
type ConflictError struct {
	Names []string
}

// shownConflicts bounds the names a ConflictError's message lists: a
// charon holding thousands of names swanmgr did not load (another tool's,
// or a record lost) is one line to read, not thousands (-o json lists
// them all).
const shownConflicts = 20

func (e *ConflictError) Error() string {
	names, more := e.Names, ""
	if len(names) > shownConflicts {
		names, more = names[:shownConflicts], fmt.Sprintf(" and %d more", len(names)-shownConflicts)
	}
	return fmt.Sprintf("charon already has %s that swanmgr did not load: %s%s; swanmgr never changes what it does not own (rename the rule, or unload it with swanctl)",
		plural(len(e.Names), "connection or secret", "connections or secrets"), strings.Join(names, ", "), more)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Compute compares what should be loaded (desired; nil to unassign) with
// the daemon and the record, charon's copy of every connection included.
func Compute(ctx context.Context, d Daemon, socket string, rec *Record, desired *render.Result) (*Plan, error) {
	return compute(ctx, d, socket, rec, desired, nil)
}

// compute is Compute with charon's views fetched ahead (nil: fetched here,
// all of them).
func compute(ctx context.Context, d Daemon, socket string, rec *Record, desired *render.Result, ahead *viewsAhead) (*Plan, error) {
	if ahead == nil {
		ahead = startViews(ctx, d, rec, true)
	}
	live, shared, err := ahead.liveIDs(ctx, d)
	if err != nil {
		return nil, err
	}
	liveSet := set(live)
	sharedSet := set(shared)
	r := trace.StartRegion(ctx, "plan-views")
	views, err := ahead.wait()
	r.End()
	if err != nil {
		return nil, err
	}

	p := &Plan{Socket: socket, Previous: rec, Desired: desired, LiveSecrets: sharedSet}
	var conflicts []string
	want := map[string]bool{}
	if desired != nil {
		want = make(map[string]bool, len(desired.Conns))
		p.Policy = desired.Policy
		p.Conns = make([]ConnPlan, 0, len(desired.Conns)+8)
		r = trace.StartRegion(ctx, "plan-hashes")
		hashes := connHashes(desired.Conns)
		r.End()
		for i := range desired.Conns {
			c := &desired.Conns[i]
			want[c.Name] = true
			old := rec.Conn(c.Name)
			hash := hashes[i]
			cp := ConnPlan{Name: c.Name, Origin: c.Origin, New: c, Old: old, Hash: hash}
			switch {
			case old == nil && liveSet[c.Name] && rec.pendingConn(c.Name) && !rec.pendingMatches(c.Name, views):
				// Loaded by someone else under a name an unfinished apply
				// had noted: not swanmgr's to replace.
				conflicts = append(conflicts, c.Name)
				continue
			case old == nil && liveSet[c.Name] && rec.pendingConn(c.Name):
				// An unfinished apply loaded it, with settings unknown now.
				cp.Change = Changed
			case old == nil && liveSet[c.Name]:
				conflicts = append(conflicts, c.Name)
				continue
			case old == nil:
				cp.Change = Added
			case !liveSet[c.Name]:
				cp.Change, cp.Restore = Changed, true
				if old.Hash == hash {
					cp.Change = Added
				}
			case old.Hash == hash && old.replacedIn(views):
				// Same policy, but charon's copy was replaced: load ours
				// again, and take down SAs made with the other settings.
				cp.Change, cp.Drift, cp.IKEChanged = Changed, true, true
			case old.Hash == hash:
				cp.Change = Unchanged
				if views == nil && old.View != "" {
					// Not listed (over CompareAllUpTo, no pending
					// note): found by name only.
					p.Unverified++
				}
			default:
				cp.Change = Changed
				// No hash: charon did not install all of it last time;
				// load it whole again. Unless children's hashes were
				// cleared too: their SAs would not tear down last time
				// (retryTeardown), and only theirs go now.
				cp.IKEChanged = old.IKEHash != c.IKEHash() || old.Hash == "" && !retriesChildren(old)
				nh := c.ChildHashes()
				for name, h := range old.ChildHashes {
					// "" (retryTeardown) also for a child the connection
					// no longer has.
					if nh[name] != h || h == "" {
						cp.ChangedChildren = append(cp.ChangedChildren, name)
					}
				}
				sort.Strings(cp.ChangedChildren)
			}
			p.Conns = append(p.Conns, cp)
		}
		for _, s := range desired.Secrets {
			if !rec.hasSecret(s.Name) && !rec.pendingSecret(s.Name) && sharedSet[s.Name] {
				conflicts = append(conflicts, s.Name)
			}
		}
		p.Secrets = desired.Secrets
	}
	if len(conflicts) > 0 {
		return nil, &ConflictError{Names: conflicts}
	}
	if rec != nil {
		var keepSecret map[string]bool
		if desired != nil {
			keepSecret = make(map[string]bool, len(desired.Secrets))
			for _, ds := range desired.Secrets {
				keepSecret[ds.Name] = true
			}
		}
		for i := range rec.Conns {
			old := &rec.Conns[i]
			if want[old.Name] {
				continue
			}
			cp := ConnPlan{Name: old.Name, Change: Removed, Origin: old.Origin, Old: old}
			if !liveSet[old.Name] {
				cp.Restore = true // already gone from charon: nothing to unload
			}
			p.Conns = append(p.Conns, cp)
		}
		for _, s := range rec.Secrets {
			if !keepSecret[s.Name] && sharedSet[s.Name] {
				p.Stale = append(p.Stale, s.Name)
			}
		}
		// Left behind by an unfinished apply and no longer wanted.
		for _, name := range rec.Pending.Conns {
			if !want[name] && rec.Conn(name) == nil && liveSet[name] {
				if !rec.pendingMatches(name, views) {
					p.Warnings = append(p.Warnings, fmt.Sprintf("charon has a connection %s that an unfinished apply of swanmgr had noted, but with other settings than swanmgr sent: left alone (unload it with swanctl --unload-conn if it is stale)", name))
					continue
				}
				p.Conns = append(p.Conns, ConnPlan{Name: name, Change: Removed, Old: &RecordConn{Name: name}})
			}
		}
		for _, id := range rec.Pending.Secrets {
			if !keepSecret[id] && !rec.hasSecret(id) && sharedSet[id] {
				p.Stale = append(p.Stale, id)
			}
		}
	}
	p.Rules = rules(p.Conns)
	return p, nil
}

// rules sums connection changes per rule, in the order rules first appear.
func rules(conns []ConnPlan) []RulePlan {
	out := make([]RulePlan, 0, len(conns))
	idx := make(map[string]int, len(conns))
	for _, c := range conns {
		for _, rule := range connRules(c) {
			change := ruleChange(c, rule)
			i, ok := idx[rule]
			if !ok {
				i = len(out)
				idx[rule] = i
				out = append(out, RulePlan{Rule: rule, Policy: c.Origin.Policy, Change: change})
			}
			r := &out[i]
			r.Conns = append(r.Conns, c)
			r.Drift = r.Drift || c.Drift
			if r.Change != change {
				r.Change = Changed
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// connRules are the rules a connection carries: several negotiate rules
// to one peer share a connection, each with its own children.
func connRules(c ConnPlan) []string {
	switch {
	case c.New != nil:
		return render.Rules(c.Origin, c.New.Children)
	case c.Old != nil:
		return render.Rules(c.Origin, c.Old.Children)
	}
	return []string{c.Origin.Rule}
}

// ruleChange is what a connection's change means for one of its rules:
// a changed connection changes only the rules whose children changed,
// unless its IKE settings changed (then every child is re-applied).
func ruleChange(c ConnPlan, rule string) Change {
	if c.Change != Changed || c.IKEChanged || c.Restore || c.Drift || c.New == nil || c.Old == nil {
		return c.Change
	}
	of := map[string]string{}
	for _, co := range c.New.Children {
		of[co.Name] = co.RuleOf(c.Origin)
	}
	for _, co := range c.Old.Children {
		if _, ok := of[co.Name]; !ok {
			of[co.Name] = co.RuleOf(c.Origin)
		}
	}
	for _, name := range c.ChangedChildren {
		if of[name] == rule {
			return Changed
		}
	}
	for _, co := range c.New.Children {
		// A child the old connection did not have: added to this rule.
		if co.RuleOf(c.Origin) == rule && c.Old.ChildHashes[co.Name] == "" {
			return Changed
		}
	}
	return Unchanged
}

// retriesChildren says a recorded connection has children whose hashes
// were cleared (see retryTeardown).
func retriesChildren(old *RecordConn) bool {
	for _, h := range old.ChildHashes {
		if h == "" {
			return true
		}
	}
	return false
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Teardowns fills each rule plan's Teardown with the live SAs its change
// would tear down (see ConnPlan.targets): what apply terminates.
func (p *Plan) Teardowns(ctx context.Context, d Daemon) error {
	sas, err := d.LiveSAs(ctx, p.teardownQueries())
	if err != nil {
		return err
	}
	for ri := range p.Rules {
		r := &p.Rules[ri]
		r.Teardown = nil
		for _, c := range r.Conns {
			for _, t := range c.targets(sas) {
				r.Teardown = append(r.Teardown, t.SA)
			}
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// connHashes hashes the connections (render.Conn.Hash), on every CPU
// when there are many: at thousands of connections it is the plan's
// largest part.
func connHashes(conns []render.Conn) []string {
	out := make([]string, len(conns))
	workers := min(runtime.GOMAXPROCS(0), len(conns)/256+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(conns); i += workers {
				out[i] = conns[i].Hash()
			}
		}()
	}
	wg.Wait()
	return out
}
