package diagnose

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/vici"
)

// conn is Alice's first rule as the record holds it: one child carrying
// tcp/6667 from Alice to Bob.
func conn() assign.RecordConn {
	body := &render.Section{}
	body.SetList("proposals", "aes256gcm16-prfsha256-x25519")
	ch := body.Sub("children", "").Sub("sm-abczz-with-bob-1", "")
	ch.SetList("local_ts", "dynamic[tcp]")
	ch.SetList("remote_ts", "172.31.67.244/32[tcp/6667]")
	ch.SetList("esp_proposals", "aes256gcm16-x25519")
	return assign.RecordConn{Name: "sm-abczz-with-bob", Body: body}
}

func sa(localTS, remoteTS string) (vici.IKESA, vici.ChildSA) {
	ch := vici.ChildSA{Name: "sm-abczz-with-bob-1", State: "INSTALLED", LocalTS: []string{localTS}, RemoteTS: []string{remoteTS}}
	return vici.IKESA{Name: "sm-abczz-with-bob", LocalHost: "172.16.98.231", RemoteHost: "172.31.67.244", Children: []vici.ChildSA{ch}}, ch
}

func TestNarrowed(t *testing.T) {
	for _, tc := range []struct {
		name, local, remote, want string
	}{
		{"as configured", "172.16.98.231/32[tcp]", "172.31.67.244/32[tcp/6667]", ""},
		{"remote port narrowed", "172.16.98.231/32[tcp]", "172.31.67.244/32[tcp/6668]",
			"the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to remote 172.31.67.244/32[tcp/6668] instead of 172.31.67.244/32[tcp/6667]; it does not carry this filter's traffic)"},
		{"local narrowed", "172.16.98.231/32[tcp/6667]", "172.31.67.244/32[tcp/6667]",
			"the peer's filters do not mirror yours: check for reversed addresses or ports (the SA came up narrowed to local 172.16.98.231/32[tcp/6667] instead of 172.16.98.231/32[tcp]; it does not carry this filter's traffic)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ch := sa(tc.local, tc.remote)
			if got := Narrowed(conn(), ch.Name, s, ch); got != tc.want {
				t.Errorf("Narrowed:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	s, ch := sa("10.0.0.1/32", "10.0.0.2/32")
	if got := Narrowed(conn(), "no-such-child", s, ch); got != "" {
		t.Errorf("a child the record does not know: got %q, want nothing said", got)
	}
}

func TestFindChild(t *testing.T) {
	sas := []vici.IKESA{
		{Name: "other", Children: []vici.ChildSA{{Name: "c", State: "INSTALLED", UniqueID: 9}}},
		{Name: "conn", UniqueID: 1, Children: []vici.ChildSA{{Name: "c", State: "INSTALLED", UniqueID: 3}, {Name: "c", State: "REKEYED", UniqueID: 7}}},
		{Name: "conn", UniqueID: 2, Children: []vici.ChildSA{{Name: "c", State: "INSTALLED", UniqueID: 5}}},
	}
	sa, ch, ok := FindChild(sas, "conn", "c")
	if !ok || ch.UniqueID != 5 || sa.UniqueID != 2 {
		t.Errorf("FindChild = IKE #%d CHILD #%d %v, want the newest installed CHILD_SA #5 of IKE_SA #2", sa.UniqueID, ch.UniqueID, ok)
	}
	if _, _, ok := FindChild(sas, "conn", "d"); ok {
		t.Error("FindChild found a child that has no SA")
	}
	if _, _, ok := FindChild(sas[1:2], "conn", "c"); !ok {
		t.Error("FindChild missed an installed CHILD_SA next to a rekeyed one")
	}
}

func TestFailure(t *testing.T) {
	noProposal := fmt.Errorf("initiate: %w", &vici.NegotiationError{Name: "sm-abczz-with-bob-1", Reason: vici.ReasonNoProposal, Evidence: "received NO_PROPOSAL_CHOSEN notify error"})
	got := Failure(noProposal, conn(), "sm-abczz-with-bob-1")
	for _, want := range []string{
		"no common security method (charon: received NO_PROPOSAL_CHOSEN notify error)",
		"you proposed IKE aes256gcm16-prfsha256-x25519; ESP aes256gcm16-x25519",
		`the peer's own proposals are only in its log ("received proposals" / "configured proposals")`,
		"the peer may also have no rule for this traffic at all",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Failure on NO_PROPOSAL_CHOSEN = %q\nwant it to contain %q", got, want)
		}
	}
	// Without recorded settings the hint about the peer's rules remains.
	if got := OurProposals(noProposal, assign.RecordConn{}, "x"); got != "; "+NoRuleHint {
		t.Errorf("OurProposals without settings = %q", got)
	}

	auth := &vici.NegotiationError{Reason: vici.ReasonAuthFailed, Evidence: "received AUTHENTICATION_FAILED notify error"}
	if got, want := Failure(auth, conn(), "sm-abczz-with-bob-1"), "authentication failed: preshared keys or certificates differ (charon: received AUTHENTICATION_FAILED notify error)"; got != want {
		t.Errorf("Failure on AUTHENTICATION_FAILED = %q, want %q", got, want)
	}
	ts := &vici.NegotiationError{Reason: vici.ReasonTSMismatch}
	if got, want := Explain(ts), "the peer's filters do not mirror yours: check for reversed addresses or ports"; got != want {
		t.Errorf("Explain(TS mismatch) = %q, want %q", got, want)
	}
	if got := Failure(errors.New("cannot reach charon"), conn(), "sm-abczz-with-bob-1"); got != "cannot reach charon" {
		t.Errorf("Failure of a plain error = %q, want the error as it is", got)
	}
}
