package status

import (
	"context"
	"slices"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
)

// maxRelisted is how many IKE_SAs one burst of events may name and still
// be asked for one by one; a burst naming more refreshes everything.
const maxRelisted = 8

// relistIDs are the IKE_SAs a burst of events changed, in the order first
// named, when asking charon for just those is enough to bring the last
// view up to date; ok is false when the whole listing must be asked
// again. A log event (an authentication failure) changes no SA: it names
// none, and only the counts move. An ike-rekey replaces its IKE_SA by
// one of a new id that the event does not name in a form parsed here, so
// it asks for everything, as does an event whose IKE_SA has no id.
func relistIDs(evs []vici.Event) (ids []uint64, ok bool) {
	for _, ev := range evs {
		switch ev.Name {
		case "ike-updown", "child-updown", "child-rekey":
			sas, err := ev.IKESAs()
			if err != nil || len(sas) == 0 {
				return nil, false
			}
			for _, sa := range sas {
				if sa.UniqueID == 0 {
					return nil, false
				}
				if !slices.Contains(ids, sa.UniqueID) {
					ids = append(ids, sa.UniqueID)
				}
			}
		case "log":
		default:
			return nil, false
		}
	}
	return ids, len(ids) <= maxRelisted
}

// replaceSAs returns sas with every IKE_SA of unique id id replaced by
// now (charon's current view of it: none when it is gone), in place, or
// appended when it is new.
func replaceSAs(sas []vici.IKESA, id uint64, now []vici.IKESA) []vici.IKESA {
	i := slices.IndexFunc(sas, func(sa vici.IKESA) bool { return sa.UniqueID == id })
	if i < 0 {
		return append(sas, now...)
	}
	rest := slices.DeleteFunc(slices.Clone(sas[i:]), func(sa vici.IKESA) bool { return sa.UniqueID == id })
	out := append(slices.Clip(sas[:i]), now...)
	return append(out, rest...)
}

// refreshSAs brings the last full view up to date after a burst of SA
// events by asking charon only for the IKE_SAs they name (list-sas with
// ike-id), with its statistics and counters: the cost of an event is that
// of its IKE_SA, not of every SA (a full list-sas of 10,000 CHILD_SAs
// takes charon seconds). It reports false, having shown nothing, when the
// burst needs the whole listing or charon did not answer; refresh then
// asks for everything. The next tick asks for everything anyway.
func (w *watcher) refreshSAs(ctx context.Context, evs []vici.Event) (bool, error) {
	if w.last == nil {
		return false, nil
	}
	ids, ok := relistIDs(evs)
	if !ok {
		return false, nil
	}
	in := *w.last
	now := w.now()
	// The SAs not asked for again, as charon would list them now.
	if sas, ok := aged(in.SAs, viewsApart(in.Time, now)); ok {
		in.SAs = sas
	}
	if w.o.Records != nil {
		// An apply (or unassign) since the last view changes the rules
		// the SAs belong to, and the guard: that view is asked whole.
		rec, err := w.o.Records.Record()
		if err != nil || !sameAssignment(rec, in.Record) {
			return false, nil
		}
		readConfirmations(w.o.Records, &in)
	}
	cctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	mine := ownConns(in.Record)
	// Collect asked list-conns when an SA was not of swanmgr's
	// connections: the authentication classes of others' connections come
	// from it. A new SA of such a connection asks it now.
	askedConns := slices.ContainsFunc(in.SAs, func(sa vici.IKESA) bool { return !mine[sa.Name] })
	for _, id := range ids {
		fresh, err := w.client.ListSAs(cctx, vici.SAFilter{IKEID: id})
		if err != nil {
			return false, nil
		}
		if !askedConns && slices.ContainsFunc(fresh, func(sa vici.IKESA) bool { return !mine[sa.Name] }) {
			in.Conns, in.ConnsErr = w.client.ListConns(cctx)
			askedConns = true
		}
		in.SAs = replaceSAs(in.SAs, id, fresh)
	}
	if w.o.Records != nil && in.RecordErr == nil && NeedsBodies(in.Record, in.SAs) {
		in.Record, in.RecordErr = w.o.Records.WithBodies()
	}
	if len(ids) > 0 {
		// As Collect: a view without them says so.
		if s, err := w.client.Stats(cctx); err == nil {
			in.Stats, in.StatsErr = &s, nil
		} else {
			in.Stats, in.StatsErr = nil, err
		}
		in.Counters, in.CountersErr = w.client.Counters(cctx)
	}
	if ctx.Err() != nil {
		return true, nil
	}
	in.Time, in.Events = now, w.counts.Copy()
	return true, w.emit(&in)
}

// sameAssignment reports whether two reads of swanmgr's record are of the
// same assignment (one may carry the connections' settings, the other
// not).
func sameAssignment(a, b *assign.Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AppliedAt.Equal(b.AppliedAt) && a.Policy == b.Policy && a.Source == b.Source &&
		a.GuardHash == b.GuardHash && len(a.Conns) == len(b.Conns)
}
