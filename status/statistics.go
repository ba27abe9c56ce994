package status

import (
	"fmt"
	"time"
)

// charonTimeLayout is how charon's stats write its start time (%T).
const charonTimeLayout = "Jan _2 15:04:05 2006"

func (b *builder) daemon() DaemonInfo {
	in := b.in
	d := DaemonInfo{Reachable: in.DaemonErr == nil}
	if in.DaemonErr != nil {
		d.Error = ptr(in.DaemonErr.Error())
		return d
	}
	if v := in.Version; v != nil {
		d.Name, d.Version = optStr(v.Daemon), optStr(v.Version)
		d.Sysname, d.Release, d.Machine = optStr(v.Sysname), optStr(v.Release), optStr(v.Machine)
	}
	if s := in.Stats; s != nil && s.UptimeSince != "" {
		loc := in.Location
		if loc == nil {
			loc = time.UTC
		}
		if t, err := time.ParseInLocation(charonTimeLayout, s.UptimeSince, loc); err == nil {
			t = t.UTC()
			d.StartedAt = &t
			up := int64(max(b.now.Sub(t), 0) / time.Second)
			d.UptimeSeconds = &up
		}
	}
	d.CountersPlugin = in.Counters != nil
	return d
}

// activeState tells a CHILD_SA whose keys are in the IPsec stack.
func activeState(s string) bool {
	return s == "INSTALLED" || s == "REKEYING" || s == "REKEYED" || s == "UPDATING"
}

func (b *builder) statistics() Statistics {
	in := b.in
	var s Statistics
	if in.DaemonErr != nil {
		for _, f := range s.figures() {
			f.fig.Note = "daemon unavailable"
		}
		return s
	}
	var active, confOut, confIn, authOut, authIn uint64
	for _, ike := range in.SAs {
		for _, ch := range ike.Children {
			if activeState(ch.State) {
				active++
			}
			if confidential(ch) {
				confOut += ch.BytesOut
				confIn += ch.BytesIn
			} else {
				authOut += ch.BytesOut
				authIn += ch.BytesIn
			}
		}
	}
	now := func(v uint64, note string) Figure {
		return Figure{Value: ptr(v), Source: ptr(SourceListSAs), Note: note}
	}
	s.ActiveAssociations = now(active, "CHILD_SAs installed now (INSTALLED, UPDATING, REKEYING, REKEYED)")
	const present = "of the SAs present now: charon forgets the bytes of closed SAs"
	s.ConfidentialBytesSent = now(confOut, "ESP with encryption, "+present)
	s.ConfidentialBytesReceived = now(confIn, "ESP with encryption, "+present)
	s.AuthenticatedBytesSent = now(authOut, "integrity only (AH, ESP with NULL or AES-GMAC), "+present)
	s.AuthenticatedBytesReceived = now(authIn, "integrity only (AH, ESP with NULL or AES-GMAC), "+present)

	if st := in.Stats; st != nil {
		s.HalfOpenIKESAs = Figure{Value: ptr(st.IKESAsHalfOpen), Source: ptr(SourceStats), Note: "IKE_SAs being set up now"}
		s.IKESAs = Figure{Value: ptr(st.IKESAsTotal), Source: ptr(SourceStats), Note: "IKE_SAs now"}
	} else {
		s.HalfOpenIKESAs.Note = "stats failed"
		s.IKESAs.Note = "stats failed"
	}

	ev := in.Events
	counted := func(v uint64, what string) Figure {
		since := ev.Since.UTC()
		return Figure{Value: ptr(v), Source: ptr(SourceEvents), Since: &since,
			Note: "counted by swanmgr from charon's " + what + " events since it started watching"}
	}
	if c := in.Counters; c != nil {
		ike := c["ike-rekey-init"] + c["ike-rekey-resp"]
		child := c["child-rekey"]
		f := Figure{Value: ptr(ike + child), Source: ptr(SourceCounters),
			Note: fmt.Sprintf("IKE_SA %d, CHILD_SA %d, since charon started (counters plugin)", ike, child)}
		if b.in.Stats != nil {
			if d := b.daemon(); d.StartedAt != nil {
				f.Since = d.StartedAt
			}
		}
		s.Rekeys = f
	} else if ev != nil {
		s.Rekeys = counted(ev.IKERekeys+ev.ChildRekeys, "ike-rekey and child-rekey")
		s.Rekeys.Note += fmt.Sprintf(" (IKE_SA %d, CHILD_SA %d; charon's counters plugin is not loaded)", ev.IKERekeys, ev.ChildRekeys)
	} else {
		s.Rekeys.Note = "charon's counters plugin is not loaded; status --watch and metrics count them from events"
	}
	if ev != nil {
		s.KeyAdditions = counted(ev.ChildUp+ev.ChildRekeys, "child-updown and child-rekey")
		s.KeyAdditions.Note = "CHILD_SA keys installed (new and rekeyed), " + s.KeyAdditions.Note
		s.MainModes = counted(ev.IKEUp, "ike-updown")
		s.MainModes.Note = "IKE_SAs established, " + s.MainModes.Note
		s.QuickModes = counted(ev.ChildUp, "child-updown")
		s.QuickModes.Note = "CHILD_SAs established (rekeys not included), " + s.QuickModes.Note
		s.AuthenticationFailures = counted(ev.AuthFailures, "log")
		s.AuthenticationFailures.Note = "IKE messages with an AUTHENTICATION_FAILED notify, sent or received, " + s.AuthenticationFailures.Note
		since := ev.Since.UTC()
		s.EventsCountedSince = &since
		s.EventsReconnects = ev.Reconnects
	} else {
		const why = "charon does not count them; status --watch and metrics count them from its events"
		s.KeyAdditions.Note = why
		s.MainModes.Note = why
		s.QuickModes.Note = why
		s.AuthenticationFailures.Note = "charon 5.9 does not count them; status --watch and metrics count them from its log events"
	}
	return s
}

type namedFigure struct {
	label string
	fig   *Figure
}

// figures lists the statistics in IPSecMon's order with their labels.
func (s *Statistics) figures() []namedFigure {
	return []namedFigure{
		{"Active Associations", &s.ActiveAssociations},
		{"Confidential Bytes Sent", &s.ConfidentialBytesSent},
		{"Confidential Bytes Received", &s.ConfidentialBytesReceived},
		{"Authenticated Bytes Sent", &s.AuthenticatedBytesSent},
		{"Authenticated Bytes Received", &s.AuthenticatedBytesReceived},
		{"Key Additions", &s.KeyAdditions},
		{"Rekeys", &s.Rekeys},
		{"Main Modes (IKE_SAs established)", &s.MainModes},
		{"Quick Modes (CHILD_SAs established)", &s.QuickModes},
		{"Authentication Failures", &s.AuthenticationFailures},
		{"Half-open IKE_SAs", &s.HalfOpenIKESAs},
		{"IKE_SAs", &s.IKESAs},
	}
}
