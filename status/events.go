package status

import (
	"regexp"
	"time"

	"github.com/swanmgr/swanmgr/vici"
)

// WatchedEvents are the charon events a watcher subscribes to: the four
// that change the SAs, and log for authentication failures.
var WatchedEvents = []string{"ike-updown", "child-updown", "ike-rekey", "child-rekey", "log"}

// EventCounts are figures charon does not keep, counted by swanmgr from
// charon's events while it watches. Events raised while swanmgr was not
// connected (a charon restart) are not counted: Reconnects says how often
// that happened.
type EventCounts struct {
	Since      time.Time // when counting started
	Reconnects int       // times the event session was re-established

	IKEUp        uint64 // ike-updown with up: IKE_SAs established ("main modes")
	ChildUp      uint64 // CHILD_SAs in child-updown with up ("quick modes")
	IKERekeys    uint64 // ike-rekey
	ChildRekeys  uint64 // child-rekey
	AuthFailures uint64 // log lines of IKE messages carrying AUTHENTICATION_FAILED
}

// authFailedRE matches charon's log line for an IKE message with an
// AUTHENTICATION_FAILED notify, generated (we refused the peer) or parsed
// (the peer refused us): "generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]",
// "parsed IKE_AUTH response 1 [ N(AUTH_FAILED) ]". Exactly one of the two
// is logged on each side of a failed authentication.
var authFailedRE = regexp.MustCompile(`^(generating|parsed) .*\bN\(AUTH_FAILED\)`)

// Count adds one event. It reports whether the event can change the SAs
// (so a view should be refreshed).
func (c *EventCounts) Count(ev vici.Event) bool {
	switch ev.Name {
	case "ike-updown":
		if ev.Up() {
			c.IKEUp++
		}
		return true
	case "child-updown":
		if ev.Up() {
			sas, err := ev.IKESAs()
			n := 0
			for _, sa := range sas {
				n += len(sa.Children)
			}
			if err != nil || n == 0 {
				n = 1
			}
			c.ChildUp += uint64(n)
		}
		return true
	case "ike-rekey":
		c.IKERekeys++
		return true
	case "child-rekey":
		c.ChildRekeys++
		return true
	case "log":
		if l := ev.LogLine(); l.Group == "ENC" && authFailedRE.MatchString(l.Message) {
			c.AuthFailures++
			return true
		}
	}
	return false
}

// Copy returns a copy, for a view built while counting goes on.
func (c *EventCounts) Copy() *EventCounts {
	if c == nil {
		return nil
	}
	d := *c
	return &d
}
