package assign

import (
	"context"
	"runtime/trace"
	"sort"
	"strings"

	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// A connection's "view" is what charon's list-conns shows of it that
// swanmgr can compare with what it loaded: the addresses, and per child
// its mode and traffic selectors (normalized: charon prints port names).
// list-conns does not show proposals or start actions, so a change to
// those alone goes unseen; one to what a connection matches does not.
// The record keeps the view of each connection swanmgr loaded, and the
// note of an unfinished apply the views of what it sent, so that charon's
// copy can be checked without reading the connections' settings again.

// viewOfBody is the view of connection settings swanmgr renders.
func viewOfBody(body *render.Section) string {
	v := connView{local: body.List("local_addrs"), remote: body.List("remote_addrs")}
	if ch := body.Subsection("children"); ch != nil {
		for _, it := range ch.All() {
			if it.Sec == nil {
				continue
			}
			v.children = append(v.children, childView{name: it.Key, mode: it.Sec.Value("mode"),
				local: it.Sec.List("local_ts"), remote: it.Sec.List("remote_ts")})
		}
	}
	return v.String()
}

// viewOfInfo is the view of a connection as charon lists it.
func viewOfInfo(ci vici.ConnInfo) string {
	v := connView{local: ci.LocalAddrs, remote: ci.RemoteAddrs}
	for _, c := range ci.Children {
		v.children = append(v.children, childView{name: c.Name, mode: c.Mode, local: c.LocalTS, remote: c.RemoteTS})
	}
	return v.String()
}

type connView struct {
	local, remote []string
	children      []childView
}

type childView struct {
	name, mode    string
	local, remote []string
}

func addrs(xs []string) string {
	if len(xs) == 0 {
		return "%any" // charon's default, and how it lists it
	}
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return strings.Join(out, ",")
}

// selectors normalizes traffic selectors: port numbers, sorted.
func selectors(xs []string) string {
	out := make([]string, 0, len(xs))
	for _, s := range xs {
		if t, err := render.ParseTS(s); err == nil {
			out = append(out, t.String())
		} else {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (v connView) String() string {
	var b strings.Builder
	b.WriteString("local=" + addrs(v.local) + " remote=" + addrs(v.remote))
	cs := append([]childView(nil), v.children...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		mode := strings.ToLower(c.mode)
		if mode == "" {
			mode = "tunnel"
		}
		b.WriteString(" | " + c.name + " " + mode + " " + selectors(c.local) + " === " + selectors(c.remote))
	}
	return b.String()
}

// liveViews returns charon's view of the connections the comparison
// needs: swanmgr's own (recorded with a view) when all, and pending names.
// nil when there are none (list-conns costs about as much as list-sas).
func liveViews(ctx context.Context, d Daemon, rec *Record, all bool) (map[string]string, error) {
	if rec == nil {
		return nil, nil
	}
	need := len(rec.Pending.Views) > 0
	for _, c := range rec.Conns {
		if all && c.View != "" {
			need = true
			break
		}
	}
	if !need {
		return nil, nil
	}
	infos, err := d.ListConns(ctx)
	if err != nil {
		return nil, err
	}
	views := make(map[string]string, len(infos))
	for _, ci := range infos {
		views[ci.Name] = viewOfInfo(ci)
	}
	return views, nil
}

// viewsAhead fetches charon's views in the background, while the policy
// is read and rendered: list-conns of thousands of connections takes
// charon about as long as rendering them takes swanmgr. The recorded
// guard the apply patches from is read beside it (1.6 MB at 5,000 rules).
type viewsAhead struct {
	done  chan struct{}
	views map[string]string
	err   error

	guardDone chan struct{}
	guard     *guard.Ruleset
	guardErr  error

	// ids: charon's connection names and shared secrets' ids, asked
	// while the policy is read (nil: the plan asks).
	ids *idsAhead
}

// idsAhead are charon's connection names and shared secrets' ids, as the
// plan asks for them (get-conns, get-shared), asked ahead.
type idsAhead struct {
	done            chan struct{}
	conns, shared   []string
	connsErr, shErr error
}

func startViews(ctx context.Context, d Daemon, rec *Record, all bool) *viewsAhead {
	v := &viewsAhead{done: make(chan struct{})}
	go func() {
		defer close(v.done)
		v.views, v.err = liveViews(ctx, d, rec, all)
	}()
	return v
}

// views is startViews of the copies this engine compares (compareAll).
func (e *Engine) views(ctx context.Context, rec *Record) *viewsAhead {
	return startViews(ctx, e.Daemon, rec, e.compareAll(rec))
}

// replacedIn says whether charon's copy of c (views, from liveViews) is
// not the one swanmgr loaded: someone replaced it. False when either view
// is unknown.
func (c *RecordConn) replacedIn(views map[string]string) bool {
	return c.View != "" && views[c.Name] != "" && views[c.Name] != c.View
}

// startAhead is views with the recorded guard read too, and charon's
// connection names and shared secrets' ids asked: all of it while the
// policy is read and rendered (under the lock, as the plan would; at
// 5,000 connections the two answers took the plan some 30 ms).
func (e *Engine) startAhead(ctx context.Context, rec *Record) *viewsAhead {
	v := e.views(ctx, rec)
	v.guardDone = make(chan struct{})
	go func() {
		defer close(v.guardDone)
		defer trace.StartRegion(ctx, "loadGuard").End()
		v.guard, v.guardErr = e.Store.LoadGuard(rec)
	}()
	ids := &idsAhead{done: make(chan struct{})}
	go func() {
		defer close(ids.done)
		defer trace.StartRegion(ctx, "idsAhead").End()
		ids.conns, ids.connsErr = e.Daemon.Conns(ctx)
		if ids.connsErr == nil {
			ids.shared, ids.shErr = e.Daemon.SharedIDs(ctx)
		}
	}()
	v.ids = ids
	return v
}

// liveIDs are charon's connection names and shared secrets' ids: those
// asked ahead, or asked now.
func (v *viewsAhead) liveIDs(ctx context.Context, d Daemon) (conns, shared []string, err error) {
	if v != nil && v.ids != nil {
		<-v.ids.done
		if v.ids.connsErr != nil {
			return nil, nil, v.ids.connsErr
		}
		return v.ids.conns, v.ids.shared, v.ids.shErr
	}
	r := trace.StartRegion(ctx, "plan-conns")
	conns, err = d.Conns(ctx)
	r.End()
	if err != nil {
		return nil, nil, err
	}
	r = trace.StartRegion(ctx, "plan-shared")
	shared, err = d.SharedIDs(ctx)
	r.End()
	return conns, shared, err
}

func (v *viewsAhead) wait() (map[string]string, error) {
	<-v.done
	return v.views, v.err
}

// recordedGuard is the guard record read ahead; ok is false when it was
// not (then the caller reads it).
func (v *viewsAhead) recordedGuard() (rs *guard.Ruleset, ok bool, err error) {
	if v == nil || v.guardDone == nil {
		return nil, false, nil
	}
	<-v.guardDone
	return v.guard, true, v.guardErr
}

// pendingMatches says whether charon's copy of a pending name is what an
// unfinished apply sent (true when that is unknown: a note from before
// views were kept).
func (r *Record) pendingMatches(name string, views map[string]string) bool {
	want, ok := r.Pending.Views[name]
	if !ok {
		return true
	}
	return views[name] == want || contains(r.Pending.EarlierViews[name], views[name])
}
