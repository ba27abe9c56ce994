package diagnose

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// NoRuleHint is added to a "no common security method" failure: charon
// answers NO_PROPOSAL_CHOSEN as well when the peer has no connection for
// this host at all, so the initiator cannot tell the two apart.
const NoRuleHint = "the peer may also have no rule for this traffic at all (charon answers NO_PROPOSAL_CHOSEN then too)"

// Failure words a failed initiate of a connection's child: Explain, and
// for a proposal mismatch what this side proposed (OurProposals).
func Failure(err error, conn assign.RecordConn, child string) string {
	return Explain(err) + OurProposals(err, conn, child)
}

// Explain words an initiate failure for an operator: the negotiation's
// reason and the log line that decided it, or the error itself.
func Explain(err error) string {
	var ne *vici.NegotiationError
	if errors.As(err, &ne) {
		s := ne.Explain()
		if ne.Evidence != "" {
			s += fmt.Sprintf(" (charon: %s)", ne.Evidence)
		}
		return s
	}
	return err.Error()
}

// OurProposals adds, to a "no common security method" failure, what this
// side proposed, and that the peer may have no rule at all. The peer's
// proposals never reach the initiator (it only gets NO_PROPOSAL_CHOSEN);
// the peer's log has them. Other failures get "".
func OurProposals(err error, conn assign.RecordConn, child string) string {
	var ne *vici.NegotiationError
	if !errors.As(err, &ne) || ne.Reason != vici.ReasonNoProposal {
		return ""
	}
	var parts []string
	if conn.Body != nil {
		if l := conn.Body.List("proposals"); l != nil {
			parts = append(parts, "IKE "+strings.Join(l, ", "))
		}
		c := conn.Body.Child(child)
		for _, k := range []string{"esp_proposals", "ah_proposals"} {
			if l := c.List(k); l != nil {
				parts = append(parts, strings.ToUpper(strings.TrimSuffix(k, "_proposals"))+" "+strings.Join(l, ", "))
			}
		}
	}
	if len(parts) == 0 {
		return "; " + NoRuleHint
	}
	return fmt.Sprintf("; you proposed %s; the peer's own proposals are only in its log (\"received proposals\" / \"configured proposals\"); %s", strings.Join(parts, "; "), NoRuleHint)
}

// FindChild returns the newest INSTALLED CHILD_SA of a child config.
func FindChild(sas []vici.IKESA, conn, child string) (vici.IKESA, vici.ChildSA, bool) {
	var best vici.ChildSA
	var bestSA vici.IKESA
	found := false
	for _, sa := range sas {
		if sa.Name != conn {
			continue
		}
		for _, ch := range sa.Children {
			if ch.Name == child && ch.State == "INSTALLED" && (!found || ch.UniqueID > best.UniqueID) {
				best, bestSA, found = ch, sa, true
			}
		}
	}
	return bestSA, best, found
}

// Narrowed compares an established CHILD_SA's traffic selectors with the
// ones swanmgr configured and says what is wrong, or "". charon accepts
// any non-empty intersection of the two sides' filters, so a peer whose
// filters do not mirror ours may give an SA that carries none of the
// intended traffic.
func Narrowed(conn assign.RecordConn, child string, sa vici.IKESA, ch vici.ChildSA) string {
	body := conn.Body.Child(child)
	if body == nil {
		return ""
	}
	local, _ := netip.ParseAddr(sa.LocalHost)
	remote, _ := netip.ParseAddr(sa.RemoteHost)
	if ok, d := sameSelectors(body, "local_ts", local, ch.LocalTS); !ok {
		return fmt.Sprintf("the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to local %s; it does not carry this filter's traffic)", d)
	}
	if ok, d := sameSelectors(body, "remote_ts", remote, ch.RemoteTS); !ok {
		return fmt.Sprintf("the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to remote %s; it does not carry this filter's traffic)", d)
	}
	return ""
}

// sameSelectors reports whether got (an SA's selectors) are exactly the
// child's key selectors, and if not, how they differ. Selectors that do
// not parse count as the same: nothing can be said about them.
func sameSelectors(body *render.Section, key string, host netip.Addr, got []string) (bool, string) {
	want, err := body.Selectors(key, host)
	if err != nil {
		return true, ""
	}
	var wantS []string
	for _, t := range want {
		wantS = append(wantS, t.String())
	}
	var gotS []string
	for _, s := range got {
		t, err := render.ParseTS(s)
		if err != nil {
			return true, ""
		}
		gotS = append(gotS, t.String())
		match := false
		for _, w := range want {
			match = match || w.Equal(t)
		}
		if !match {
			return false, fmt.Sprintf("%s instead of %s", strings.Join(gotS, ","), strings.Join(wantS, ","))
		}
	}
	return len(got) == len(want), fmt.Sprintf("%s instead of %s", strings.Join(gotS, ","), strings.Join(wantS, ","))
}
