package status

import (
	"context"
	"slices"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/guard"
	"github.com/swanmgr/swanmgr/vici"
)

// Totals are what the guard's table counted, in packets: Traffic moves
// with every packet of IKE, NAT-T, ESP or AH the table let through
// (charon's traffic on the wire), Dropped with every packet it dropped.
type Totals struct {
	Traffic, Dropped uint64
}

// TotalsReader is a GuardReader that also reads its table's totals, in
// one small read whatever the table's size. With one, Watch asks charon
// for every SA again only when its traffic moved (see refreshQuiet), and
// reads the guard's drop counts again only when it dropped something.
type TotalsReader interface {
	Totals(ctx context.Context) (Totals, error)
}

// quietMax is how long a watch goes at most without listing every SA and
// reading every drop count again, whatever the totals say: a bound on
// what anything they do not see (an SA between two addresses of this
// host, over loopback; a counter reset by hand) could leave unshown.
const quietMax = 30 * time.Second

// refreshQuiet shows the last view again, brought to the present,
// without asking charon for its SAs, when nothing can have changed them:
// no event came (an event refreshes at once), the assignment is the same,
// the guard's traffic total has not moved since the totals read before
// the last full listing (so no byte or packet count of any SA has moved:
// each is a packet on the wire through the guard's hooks), no SA is in a
// passing state (rekeying, installing, deleting), none of their timers
// runs out meanwhile, and that listing is less than quietMax old. What
// counts up (established, installed, last used) counts on, what counts
// down counts down. charon's loaded connections, statistics and counters
// are asked again (small answers), and the guard's drop counts read again
// when it dropped something. It reports false, having shown nothing, when
// a full refresh is needed.
func (w *watcher) refreshQuiet(ctx context.Context) (bool, error) {
	if w.last == nil || w.totals == nil || !w.seenOK {
		return false, nil
	}
	now := w.now()
	if now.Sub(w.listed) >= quietMax {
		return false, nil
	}
	in := *w.last
	if w.o.Records != nil {
		rec, err := w.o.Records.Record()
		if err != nil || !sameAssignment(rec, in.Record) {
			return false, nil
		}
		readConfirmations(w.o.Records, &in)
	}
	cctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	t, err := w.totals.Totals(cctx)
	if err != nil || t.Traffic != w.seen.Traffic {
		return false, nil
	}
	d := viewsApart(in.Time, now)
	sas, ok := aged(in.SAs, d)
	if !ok {
		return false, nil
	}
	in.SAs = sas
	if in.Loaded, in.LoadedErr = w.client.Conns(cctx); in.LoadedErr != nil {
		return false, nil
	}
	s, err := w.client.Stats(cctx)
	if err != nil {
		return false, nil
	}
	in.Stats, in.StatsErr = &s, nil
	in.Counters, in.CountersErr = w.client.Counters(cctx)
	w.gate.set(t, true)
	readGuard(cctx, w.gate, &in)
	if ctx.Err() != nil {
		return true, nil
	}
	// The rows are those of the last view, moved on, when all they are
	// made from is the same.
	if last := w.last; w.view != nil && in.LoadedErr == nil && last.LoadedErr == nil && slices.Equal(in.Loaded, last.Loaded) &&
		in.Guard == last.Guard && in.Record == last.Record {
		in.reuse = &reused{st: w.view, d: d}
	}
	in.Time, in.Events = now, w.counts.Copy()
	return true, w.emit(&in)
}

// viewsApart is how far apart the views of then and now are: Build
// gives times to the second (charon's durations are whole seconds), so
// whole seconds keep what was at one moment (installed at, rekeyed at)
// at the same moment.
func viewsApart(then, now time.Time) time.Duration {
	return now.Truncate(time.Second).Sub(then.Truncate(time.Second))
}

// aged is sas as charon would list them d later if nothing happened to
// them: what counts up (established, installed, last used) counts on,
// what counts down (rekeying, reauthentication, expiry) counts down. ok
// is false when an SA is in a passing state or one of its timers would
// run out within d (charon changes the SA then): list it instead.
func aged(sas []vici.IKESA, d time.Duration) (out []vici.IKESA, ok bool) {
	down := func(v time.Duration) (time.Duration, bool) {
		if v == 0 { // not scheduled
			return 0, true
		}
		return v - d, v-d > 0
	}
	up := func(v time.Duration) time.Duration {
		if v == 0 { // none yet
			return 0
		}
		return v + d
	}
	out = make([]vici.IKESA, len(sas))
	for i, sa := range sas {
		if sa.State != "ESTABLISHED" {
			return nil, false
		}
		sa.Established += d
		var ok1, ok2 bool
		if sa.RekeyTime, ok1 = down(sa.RekeyTime); !ok1 {
			return nil, false
		}
		if sa.ReauthTime, ok2 = down(sa.ReauthTime); !ok2 {
			return nil, false
		}
		children := make([]vici.ChildSA, len(sa.Children))
		for j, ch := range sa.Children {
			if ch.State != "INSTALLED" {
				return nil, false
			}
			ch.InstallTime += d
			ch.UseIn, ch.UseOut = up(ch.UseIn), up(ch.UseOut)
			if ch.RekeyTime, ok1 = down(ch.RekeyTime); !ok1 {
				return nil, false
			}
			if ch.LifeTime, ok2 = down(ch.LifeTime); !ok2 {
				return nil, false
			}
			children[j] = ch
		}
		if sa.Children == nil {
			children = nil
		}
		sa.Children = children
		out[i] = sa
	}
	if sas == nil {
		out = nil
	}
	return out, true
}

// gatedGuard is a GuardReader that reads the guard's drop counts again
// only when its Dropped total moved (or the record's guard changed, or
// quietMax passed): a drop set's element counts only when the packet is
// dropped, and every drop counts on Dropped, so an unchanged total means
// unchanged counts. It is told the totals read for the view (set) before
// it is asked; without them it always reads.
type gatedGuard struct {
	g   GuardReader
	now func() time.Time

	totals Totals
	ok     bool // totals were read for this view

	cached  bool
	hash    string
	dropped uint64
	at      time.Time
	rs      *guard.Ruleset
	drops   map[string]uint64
}

func (c *gatedGuard) set(t Totals, ok bool) { c.totals, c.ok = t, ok }

// Guard implements GuardReader.
func (c *gatedGuard) Guard(ctx context.Context, rec *assign.Record) (*guard.Ruleset, map[string]uint64, error) {
	now := c.now()
	if c.ok && c.cached && rec != nil && rec.GuardHash == c.hash && c.totals.Dropped == c.dropped && now.Sub(c.at) < quietMax {
		return c.rs, c.drops, nil
	}
	c.cached = false
	rs, drops, err := c.g.Guard(ctx, rec)
	if err == nil && c.ok && rec != nil && drops != nil {
		c.cached, c.hash, c.dropped, c.at, c.rs, c.drops = true, rec.GuardHash, c.totals.Dropped, now, rs, drops
	}
	return rs, drops, err
}

// reused are the rows of a view (st), for a view of the same SAs aged by
// d (whole seconds, viewsApart): what was at a moment stays at it, the
// seconds since count on, the seconds until count down. That is what
// Build makes of the aged SAs (TestReusedRowsAsBuilt), at a fraction of
// the cost: at 1,000 CHILD_SAs making the rows was a third of a quiet
// refresh.
type reused struct {
	st *Status
	d  time.Duration
}

// mover moves values of rows into one allocation: move returns a
// pointer to *p+delta (nil for nil).
type mover struct {
	vals []int64
}

func (m *mover) move(p *int64, delta int64) *int64 {
	if p == nil {
		return nil
	}
	m.vals = append(m.vals, *p+delta)
	return &m.vals[len(m.vals)-1]
}

func (r *reused) sas() []SA {
	s := int64(r.d / time.Second)
	out := make([]SA, len(r.st.SAs))
	m := &mover{vals: make([]int64, 0, 3*len(out))} // no growth: the pointers stay valid
	for i, row := range r.st.SAs {
		row.EstablishedSeconds = m.move(row.EstablishedSeconds, s)
		row.RekeyInSeconds = m.move(row.RekeyInSeconds, -s)
		row.ExpiresInSeconds = m.move(row.ExpiresInSeconds, -s)
		out[i] = row
	}
	return out
}

func (r *reused) ikes() []IKESA {
	s := int64(r.d / time.Second)
	out := make([]IKESA, len(r.st.IKESAs))
	m := &mover{vals: make([]int64, 0, 3*len(out))}
	for i, row := range r.st.IKESAs {
		row.EstablishedSeconds = m.move(row.EstablishedSeconds, s)
		row.RekeyInSeconds = m.move(row.RekeyInSeconds, -s)
		row.ReauthInSeconds = m.move(row.ReauthInSeconds, -s)
		out[i] = row
	}
	return out
}
