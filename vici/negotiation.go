package vici

import (
	"fmt"
	"regexp"
)

// Reason is why a negotiation failed, as far as charon's log tells.
type Reason string

// The reasons Initiate tells apart.
const (
	// ReasonTSMismatch: the peer refused our traffic selectors; its filters
	// do not mirror ours (reversed addresses or ports, other protocol).
	ReasonTSMismatch Reason = "ts-mismatch"
	// ReasonUntrustedCA: the peer's certificate is signed by a CA we do not
	// trust (charon found no issuer certificate for it).
	ReasonUntrustedCA Reason = "untrusted-ca"
	// ReasonAuthFailed: preshared keys or certificates differ.
	ReasonAuthFailed Reason = "auth-failed"
	// ReasonNoProposal: the two sides have no proposal in common.
	ReasonNoProposal Reason = "no-proposal"
	// ReasonPeerNotResponding: the peer never answered.
	ReasonPeerNotResponding Reason = "peer-not-responding"
	// ReasonOther: none of the above; Detail holds charon's message.
	ReasonOther Reason = "other"
)

// NegotiationError is a failed Initiate, explained for an operator.
type NegotiationError struct {
	Name     string    // the config initiated
	Reason   Reason    // why, as far as the log tells
	Peer     string    // the peer's address, when the log names it
	Detail   string    // charon's own answer, e.g. "establishing CHILD_SA 'x' failed"
	Evidence string    // the log line that decided Reason; "" for ReasonOther
	Log      []LogLine // every control-log line of the attempt

	Err error // charon's *CommandError
}

func (e *NegotiationError) Error() string {
	return fmt.Sprintf("initiate %q: %s", e.Name, e.Explain())
}

func (e *NegotiationError) Unwrap() error { return e.Err }

// Explain is the operator's wording of Reason, without the config name.
func (e *NegotiationError) Explain() string {
	switch e.Reason {
	case ReasonTSMismatch:
		return "the peer's filters do not mirror yours: check for reversed addresses or ports"
	case ReasonUntrustedCA:
		return "the peer's certificate is not signed by a CA you trust"
	case ReasonAuthFailed:
		return "authentication failed: preshared keys or certificates differ"
	case ReasonNoProposal:
		return "no common security method"
	case ReasonPeerNotResponding:
		if e.Peer != "" {
			return "no answer from " + e.Peer
		}
		return "no answer from the peer"
	}
	return "charon: " + e.Detail
}

// reasonRules decide a failure's Reason from charon's log lines. The first
// rule (in this order) that matches any line wins, so specific refusals the
// peer sent outrank retransmissions seen before them. The patterns follow
// the messages in strongSwan 5.9.8's sources; testdata/negotiation holds
// example logs, one file per case: add a file when charon says it otherwise.
var reasonRules = []struct {
	reason Reason
	re     *regexp.Regexp
}{
	// "received TS_UNACCEPTABLE notify, no CHILD_SA built" (initiator),
	// "no acceptable traffic selectors found" (responder),
	// "traffic selectors 10.0.0.0/24 === 10.1.0.0/24 unacceptable"
	{ReasonTSMismatch, regexp.MustCompile(`TS_UNACCEPTABLE|no acceptable traffic selectors|traffic selectors .* unacceptable`)},
	// "no issuer certificate found for "O=lab, CN=bob"" (the CA that
	// signed the peer's certificate is not one we trust); it comes before
	// the generic "no trusted ECDSA public key found for 'x'".
	{ReasonUntrustedCA, regexp.MustCompile(`no issuer certificate found for`)},
	// "received AUTHENTICATION_FAILED notify error",
	// "tried 1 shared key for 'a' - 'b', but MAC mismatched",
	// "no shared key found for 'a' - 'b'",
	// "authentication of 'x' (myself) failed",
	// "verification of AUTH payload with EAP MSK failed",
	// "no trusted RSA public key found for 'x'", "no private key found for 'x'"
	{ReasonAuthFailed, regexp.MustCompile(`AUTHENTICATION_FAILED|but MAC mismatched|no shared key found|authentication of '.*' .*failed|verification of AUTH payload .*failed|no trusted .* public key found|no private key found|signature validation failed`)},
	// "received NO_PROPOSAL_CHOSEN notify error",
	// "no acceptable proposal found", "no proposal found" (IKEv1)
	{ReasonNoProposal, regexp.MustCompile(`NO_PROPOSAL_CHOSEN|no acceptable proposal found|no proposal found`)},
	// "giving up after 5 retransmits", "peer not responding, trying again (2/3)",
	// "establishing IKE_SA failed, peer not responding",
	// "retransmit 3 of request with message ID 0" (charon's timeout came first)
	{ReasonPeerNotResponding, regexp.MustCompile(`giving up after \d+ retransmits|peer not responding|retransmit \d+ of request`)},
}

// peerRules find the peer's address in the log; the first match wins.
var peerRules = []*regexp.Regexp{
	// "initiating IKE_SA home[1] to 172.31.67.244",
	// "initiating Main Mode IKE_SA home[1] to 172.31.67.244" (IKEv1)
	regexp.MustCompile(`initiating (?:\S+ Mode )?IKE_SA \S+ to (\S+)`),
	// "sending packet: from 172.16.98.231[500] to 172.31.67.244[500] (464 bytes)"
	regexp.MustCompile(`sending packet: from \S+ to ([^\s\[]+)\[`),
}

// classify explains a refused initiate from the log lines collected
// while it ran.
func classify(name string, ce *CommandError, lines []LogLine) *NegotiationError {
	e := &NegotiationError{Name: name, Reason: ReasonOther, Detail: ce.Message, Log: lines, Err: ce}
	for _, l := range lines {
		if e.Peer != "" {
			break
		}
		for _, re := range peerRules {
			if m := re.FindStringSubmatch(l.Message); m != nil {
				e.Peer = m[1]
				break
			}
		}
	}
	for _, r := range reasonRules {
		for _, l := range lines {
			if r.re.MatchString(l.Message) {
				e.Reason, e.Evidence = r.reason, l.Message
				return e
			}
		}
	}
	return e
}
