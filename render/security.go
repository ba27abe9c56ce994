package render

import (
	"fmt"
	"sort"
	"strings"

	"github.com/swanmgr/swanmgr/model"
)

// ChildSecurity is what the CHILD_SAs of a negotiate rule propose, as
// rendered into esp_proposals or ah_proposals.
type ChildSecurity struct {
	Protocol string   // "esp" or "ah"
	Proposal string   // the rendered proposal, e.g. "aes256-sha256-x25519"
	Enc      []string // encryption keywords (AEADs included), normalized
	Integ    []string // integrity keywords, normalized
	PFSGroup string   // key exchange group for rekeying, normalized; "" without PFS
}

// ChildSecurityOf returns what a filter action makes charon propose for
// its CHILD_SAs.
func ChildSecurityOf(a model.ResolvedAction) ChildSecurity {
	cs := ChildSecurity{Protocol: "esp", PFSGroup: normAlg(a.PFSGroup)}
	if len(a.AHInteg) > 0 {
		cs.Protocol = "ah"
		cs.Proposal = proposal(a.AHInteg, nil, a.PFSGroup)
		cs.Integ = normAll(a.AHInteg)
		return cs
	}
	cs.Proposal = proposal(a.ESPEnc, a.ESPInteg, a.PFSGroup)
	cs.Enc, cs.Integ = normAll(a.ESPEnc), normAll(a.ESPInteg)
	return cs
}

// String is the proposal as charon's configuration has it, with the
// protocol: "esp aes256-sha256-x25519".
func (c ChildSecurity) String() string { return c.Protocol + " " + c.Proposal }

// SecurityMismatch is one way two endpoints' CHILD_SA security disagrees.
type SecurityMismatch struct {
	// Immediate: the CHILD_SA fails when first negotiated
	// (NO_PROPOSAL_CHOSEN). Otherwise it comes up and fails at its first
	// rekeying.
	Immediate bool
	Msg       string
}

func (m SecurityMismatch) String() string { return m.Msg }

// CompareChildSecurity compares the security of two endpoints' rules that
// protect the same traffic, this side first, and returns every
// disagreement (nil when they will agree, also at rekeying).
//
// The subtle one is PFS. In IKEv2 the first CHILD_SA of an IKE_SA is
// created with IKE_AUTH and takes its keys from the IKE_SA: charon drops
// the key exchange group from that proposal, so two sides that differ
// only in PFS (one has it, the other not, or different groups) establish
// it normally and traffic flows. Every CREATE_CHILD_SA exchange carries
// a key exchange: further CHILD_SAs of the same IKE_SA fail at once, and
// the first one fails at its first rekeying (NO_PROPOSAL_CHOSEN), an hour
// later by default (rekey_seconds). Both were seen with charon 5.9.8 (see
// e2e/custom_test.go). This compares the groups so that the mismatch is
// caught before it is deployed.
func CompareChildSecurity(local, peer ChildSecurity) []SecurityMismatch {
	var out []SecurityMismatch
	both := fmt.Sprintf("this side proposes %s, the peer %s", local, peer)
	switch {
	case local.Protocol != peer.Protocol:
		out = append(out, SecurityMismatch{true, fmt.Sprintf("no common security method: %s (one side uses %s, the other %s)", both, strings.ToUpper(local.Protocol), strings.ToUpper(peer.Protocol))})
	case !intersects(local.Enc, peer.Enc) || (len(local.Integ)+len(peer.Integ) > 0 && !intersects(local.Integ, peer.Integ)):
		out = append(out, SecurityMismatch{true, "no common security method: " + both + "; the CHILD_SA fails at once with NO_PROPOSAL_CHOSEN"})
	}
	if local.PFSGroup != peer.PFSGroup {
		group := func(g string) string {
			if g == "" {
				return "no PFS"
			}
			return "PFS with " + g
		}
		out = append(out, SecurityMismatch{false, fmt.Sprintf("session key PFS differs: this side has %s, the peer %s. The first CHILD_SA still comes up (IKEv2 takes its keys from the IKE_SA, without a key exchange) and fails only at its first rekeying, by default an hour later, with NO_PROPOSAL_CHOSEN; further CHILD_SAs of the same IKE_SA fail at once. Set the same pfs and pfs_group on both sides",
			group(local.PFSGroup), group(peer.PFSGroup))})
	}
	return out
}

// intersects reports whether two keyword lists share one, both empty
// counting as shared (AEADs have no integrity algorithm).
func intersects(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// aliases maps strongSwan keywords to one spelling per algorithm
// (proposal_keywords_static.txt).
var aliases = map[string]string{
	"aes": "aes128", "sha": "sha1", "sha1_160": "sha1", "sha2_256": "sha256", "sha2_384": "sha384",
	"sha2_512": "sha512", "sha2_256_96": "sha256_96", "md5_128": "md5", "curve25519": "x25519",
	"curve448": "x448", "aes128gcm": "aes128gcm16", "aes192gcm": "aes192gcm16", "aes256gcm": "aes256gcm16",
	"aes128gcm128": "aes128gcm16", "aes192gcm128": "aes192gcm16", "aes256gcm128": "aes256gcm16",
	"aes128gcm64": "aes128gcm8", "aes192gcm64": "aes192gcm8", "aes256gcm64": "aes256gcm8",
	"aes128gcm96": "aes128gcm12", "aes192gcm96": "aes192gcm12", "aes256gcm96": "aes256gcm12",
}

func normAlg(s string) string {
	s = strings.ToLower(s)
	if a, ok := aliases[s]; ok {
		return a
	}
	return s
}

func normAll(xs []string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, normAlg(x))
	}
	sort.Strings(out)
	return out
}
