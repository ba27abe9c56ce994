package importer

import (
	"fmt"
	"strconv"
	"strings"
)

var (
	consecInteg = map[string]string{"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha384": "sha384"}
	consecEnc   = map[string]string{"des": "des", "3des": "3des", "aes128": "aes128", "aes192": "aes192", "aes256": "aes256"}
	consecGCM   = map[string]string{"aesgcm128": "aes128gcm16", "aesgcm192": "aes192gcm16", "aesgcm256": "aes256gcm16"}
	consecGMAC  = map[string]string{"aesgmac128": "aes128gmac", "aesgmac192": "aes192gmac", "aesgmac256": "aes256gmac"}
	consecPFS   = map[string]string{"dhgroup1": "modp768", "dhgroup2": "modp1024", "dhgroup14": "modp2048", "dhgroup24": "modp2048s256",
		"ecdhp256": "ecp256", "ecdh256": "ecp256", "ecdhp384": "ecp384", "ecdh384": "ecp384"}
)

// consecSecurity sets a negotiate filter action from qmsecmethods and
// qmpfs of a consec rule.
func (n *netsh) consecSecurity(fa *FilterAction, p *params, add func(bool, string, ...any)) error {
	qm := strings.TrimSpace(p.str("qmsecmethods"))
	if qm == "" || strings.EqualFold(qm, "default") {
		fa.Security = "high"
		add(false, "qmsecmethods default: Windows' default methods are replaced by security = \"high\" (ESP AES-256-GCM)")
	} else {
		offers, err := parseConsecOffers(qm)
		if err != nil {
			return p.errf("qmsecmethods: %v", err)
		}
		mapOffers(fa, offers, n.o.LegacyAlgorithms, add)
	}
	pfs := strings.ToLower(p.str("qmpfs"))
	switch pfs {
	case "", "none":
		return nil
	case "mainmode":
		fa.PFS = true
		add(false, "qmpfs=mainmode: session key PFS with x25519 (swanmgr's IKE_SA uses x25519 first)")
		return nil
	}
	group, ok := consecPFS[pfs]
	if !ok {
		return p.errf("qmpfs=%q: want none, mainmode, dhgroup1, dhgroup2, dhgroup14, dhgroup24, ecdhp256 or ecdhp384", p.str("qmpfs"))
	}
	if (pfs == "dhgroup1" || pfs == "dhgroup2" || pfs == "dhgroup24") && !n.o.LegacyAlgorithms {
		add(true, "qmpfs=%s (%s) is too weak and not offered (keep it with --legacy-algorithms): session key PFS with x25519 instead", pfs, group)
		fa.PFS = true
		return nil
	}
	fa.PFS = true
	if fa.Security == "high" {
		fa.Security, fa.ESPEncryption = "custom", []string{"aes256gcm16"}
	}
	fa.PFSGroup = group
	return nil
}

// parseConsecOffers reads consec qmsecmethods: proposals separated by
// commas, each "esp:integrity-encryption", "ah:integrity",
// "authnoencap:integrity" or "ah:...+esp:...", then "+Nmin" and "+Nkb".
func parseConsecOffers(s string) ([]offer, error) {
	var out []offer
	for _, prop := range splitList(s) {
		o := offer{text: prop}
		for _, part := range strings.Split(strings.ToLower(prop), "+") {
			kind, alg, hasColon := strings.Cut(part, ":")
			switch {
			case !hasColon && strings.HasSuffix(part, "min"):
				m, err := strconv.ParseInt(strings.TrimSuffix(part, "min"), 10, 64)
				if err != nil || m < 1 || m > 1<<20 {
					return nil, fmt.Errorf("%q: lifetime %q: want Nmin", prop, part)
				}
				o.secs = m * 60
			case !hasColon && strings.HasSuffix(part, "kb"):
				k, err := strconv.ParseInt(strings.TrimSuffix(part, "kb"), 10, 64)
				if err != nil || k < 1 {
					return nil, fmt.Errorf("%q: lifetime %q: want Nkb", prop, part)
				}
				o.kbytes = k
			case kind == "ah":
				h, ok := consecInteg[alg]
				if !ok || o.ah != "" {
					return nil, fmt.Errorf("%q: ah:%s: want md5, sha1 or sha256 (once)", prop, alg)
				}
				o.ah = h
			case kind == "authnoencap":
				if o.esp {
					return nil, fmt.Errorf("%q: ESP twice", prop)
				}
				o.esp = true
				if g, ok := consecGMAC[alg]; ok {
					o.aead = g
				} else if h, ok := consecInteg[alg]; ok {
					o.conf, o.auth = "null", h
				} else {
					return nil, fmt.Errorf("%q: authnoencap:%s: want md5, sha1, sha256 or aesgmac128/192/256", prop, alg)
				}
			case kind == "esp":
				if o.esp {
					return nil, fmt.Errorf("%q: ESP twice", prop)
				}
				o.esp = true
				integ, enc, ok := strings.Cut(alg, "-")
				if !ok {
					return nil, fmt.Errorf("%q: esp:%s: want esp:integrity-encryption, as esp:sha1-aes256", prop, alg)
				}
				if g, ok := consecGCM[enc]; ok {
					if integ != enc {
						return nil, fmt.Errorf("%q: %s must be used for both integrity and encryption", prop, enc)
					}
					o.aead = g
					break
				}
				e, ok := consecEnc[enc]
				if !ok {
					return nil, fmt.Errorf("%q: encryption %q: want des, 3des, aes128, aes192, aes256 or aesgcm128/192/256", prop, enc)
				}
				h, ok := consecInteg[integ]
				if !ok {
					if _, gmac := consecGMAC[integ]; gmac {
						o.conf, o.auth = e, ""
						break // reported as encryption without a usable integrity algorithm
					}
					return nil, fmt.Errorf("%q: integrity %q: want md5, sha1, sha256 or aesgmac128/192/256", prop, integ)
				}
				o.conf, o.auth = e, h
			default:
				return nil, fmt.Errorf("%q: %q: want esp:, ah:, authnoencap:, Nmin or Nkb", prop, part)
			}
		}
		if !o.esp && o.ah == "" {
			return nil, fmt.Errorf("%q: no esp:, ah: or authnoencap: method", prop)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no security method")
	}
	return out, nil
}
