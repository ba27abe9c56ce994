package pair

import (
	"strings"
)

// proposal is one strongSwan proposal string split by transform type.
type proposal struct {
	text                 string
	enc, integ, prf, dh  []string
	unknownAEADOrClassic bool
}

func parseProposal(s string) proposal {
	p := proposal{text: s}
	for _, kw := range strings.Split(strings.ToLower(s), "-") {
		switch {
		case kw == "" || kw == "esn" || kw == "noesn":
		case kw == "none" || strings.HasPrefix(kw, "modp") || strings.HasPrefix(kw, "ecp") ||
			kw == "x25519" || kw == "x448" || strings.HasPrefix(kw, "curve") || strings.HasPrefix(kw, "ffdhe"):
			if kw != "none" {
				p.dh = append(p.dh, kw)
			}
		case strings.HasPrefix(kw, "prf"):
			p.prf = append(p.prf, kw)
		case strings.HasPrefix(kw, "sha") || kw == "md5" || kw == "aesxcbc" || kw == "aescmac" || strings.HasPrefix(kw, "md5_"):
			p.integ = append(p.integ, kw)
		default:
			p.enc = append(p.enc, kw)
		}
	}
	return p
}

// pick returns the first of the initiator's algorithms the responder has,
// as charon selects: the initiator's order wins. Both empty: "", true.
func pick(init, resp []string) (string, bool) {
	if len(init) == 0 && len(resp) == 0 {
		return "", true
	}
	for _, a := range init {
		for _, b := range resp {
			if a == b {
				return a, true
			}
		}
	}
	return "", false
}

// selection is what two proposal lists agree on.
type selection struct {
	ok     bool
	chosen string // "aes256gcm16" or "aes256-sha256"
	// why names the transform type without a common algorithm.
	why string
	// dh: the group used from the first rekey on (ESP/AH: PFS); dhOK is
	// false when the two ends' groups do not intersect (one has PFS and
	// the other not, or different groups).
	dh   string
	dhOK bool
}

// selectProposal compares two lists of proposals (the initiator's first).
// withDH says whether the key exchange group counts for the first
// exchange (IKE: yes; the first CHILD_SA: no, its keys come from the
// IKE_SA, so a group mismatch shows only at the first rekey).
func selectProposal(init, resp []string, withDH bool) selection {
	var last selection
	for _, is := range init {
		ip := parseProposal(is)
		for _, rs := range resp {
			rp := parseProposal(rs)
			enc, okE := pick(ip.enc, rp.enc)
			integ, okI := pick(ip.integ, rp.integ)
			prf, okP := pick(ip.prf, rp.prf)
			dh, okD := pick(ip.dh, rp.dh)
			sel := selection{dh: dh, dhOK: okD}
			switch {
			case !okE:
				sel.why = "no common encryption algorithm (" + strings.Join(ip.enc, ",") + " vs " + strings.Join(rp.enc, ",") + ")"
			case !okI:
				sel.why = "no common integrity algorithm (" + orNone(ip.integ) + " vs " + orNone(rp.integ) + ")"
			case !okP:
				sel.why = "no common PRF (" + orNone(ip.prf) + " vs " + orNone(rp.prf) + ")"
			case withDH && !okD:
				sel.why = "no common key exchange group (" + orNone(ip.dh) + " vs " + orNone(rp.dh) + ")"
			default:
				sel.ok = true
				parts := []string{enc}
				for _, x := range []string{integ, prf} {
					if x != "" {
						parts = append(parts, x)
					}
				}
				if withDH && dh != "" {
					parts = append(parts, dh)
				}
				sel.chosen = strings.Join(parts, "-")
				return sel
			}
			last = sel
		}
	}
	return last
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ",")
}
