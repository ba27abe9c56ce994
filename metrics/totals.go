package metrics

// saID identifies an SA inside charon (never a label).
type saID struct{ ike, child uint64 }

type values struct{ bytesIn, bytesOut, packetsIn, packetsOut uint64 }

func (v *values) add(w values) {
	v.bytesIn += w.bytesIn
	v.bytesOut += w.bytesOut
	v.packetsIn += w.packetsIn
	v.packetsOut += w.packetsOut
}

// observation is one SA as a scrape saw it.
type observation struct {
	id           saID
	labels       saLabels
	confidential bool
	v            values
}

// totals turns charon's per-SA figures, which vanish with their SA and
// restart at zero with each rekeyed SA, into counters that only grow: the
// last value of an SA that is gone is kept in retired.
type totals struct {
	live    map[saID]observation
	retired map[saLabels]values
	kind    map[bool]values // retired, by confidential
}

func newTotals() *totals {
	return &totals{live: map[saID]observation{}, retired: map[saLabels]values{}, kind: map[bool]values{}}
}

func (t *totals) retire(o observation) {
	r := t.retired[o.labels]
	r.add(o.v)
	t.retired[o.labels] = r
	k := t.kind[o.confidential]
	k.add(o.v)
	t.kind[o.confidential] = k
}

// update takes a scrape's SAs and returns the totals per labels and per
// kind (confidential or not).
func (t *totals) update(seen []observation) (map[saLabels]values, map[bool]values) {
	t.apply(seen)
	return t.sums()
}

// apply takes a scrape's SAs.
func (t *totals) apply(seen []observation) {
	now := make(map[saID]observation, len(seen))
	for _, o := range seen {
		if prev, ok := t.live[o.id]; ok {
			// charon reuses unique ids after a restart, and labels change
			// when a policy is re-assigned: then it is another SA.
			if o.v.bytesIn < prev.v.bytesIn || o.v.bytesOut < prev.v.bytesOut ||
				o.v.packetsIn < prev.v.packetsIn || o.v.packetsOut < prev.v.packetsOut ||
				o.labels != prev.labels || o.confidential != prev.confidential {
				t.retire(prev)
			}
		}
		now[o.id] = o
	}
	for id, prev := range t.live {
		if _, ok := now[id]; !ok {
			t.retire(prev)
		}
	}
	// An SA whose values went back was retired above; drop its old entry.
	t.live = now
}

// sums are the totals per labels and per kind (confidential or not).
func (t *totals) sums() (map[saLabels]values, map[bool]values) {
	per := make(map[saLabels]values, len(t.retired))
	for l, v := range t.retired {
		per[l] = v
	}
	kind := map[bool]values{true: t.kind[true], false: t.kind[false]}
	for _, o := range t.live {
		v := per[o.labels]
		v.add(o.v)
		per[o.labels] = v
		k := kind[o.confidential]
		k.add(o.v)
		kind[o.confidential] = k
	}
	return per, kind
}
