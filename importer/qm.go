package importer

import (
	"fmt"
	"strconv"
	"strings"
)

// offer is one quick-mode security method: ESP[conf,auth], AH[hash] or
// AH[hash]+ESP[conf,auth], with its lifetimes (0 = not given).
type offer struct {
	text         string
	ah           string // AH hash, "" without AH
	esp          bool
	conf, auth   string // ESP algorithms as strongSwan keywords ("null" encryption; "" integrity = none)
	aead         string // an ESP AEAD (aes256gcm16, aes256gmac) instead of conf and auth
	kbytes, secs int64
}

var (
	netshConf = map[string]string{"des": "des", "3des": "3des", "none": "null", "aes128": "aes128", "aes192": "aes192", "aes256": "aes256"}
	netshHash = map[string]string{"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "none": ""}
	legacy    = map[string]bool{"des": true, "3des": true, "md5": true}
)

// parseOffers reads qmsecmethods: offers separated by blanks (or commas
// between offers), each "ESP[ConfAlg,AuthAlg]:k/s", "AH[HashAlg]:k/s" or
// "AH[HashAlg]+ESP[ConfAlg,AuthAlg]:k/s".
func parseOffers(s string) ([]offer, error) {
	var out []offer
	for _, f := range splitOffers(s) {
		o := offer{text: f}
		methods, life, _ := strings.Cut(f, ":")
		for _, m := range strings.Split(methods, "+") {
			kind, rest, ok := strings.Cut(m, "[")
			if !ok || !strings.HasSuffix(rest, "]") {
				return nil, fmt.Errorf("%q: want ESP[ConfAlg,AuthAlg], AH[HashAlg] or AH[HashAlg]+ESP[ConfAlg,AuthAlg], optionally with :Nk/Ns", f)
			}
			algs := strings.Split(strings.ToLower(strings.TrimSuffix(rest, "]")), ",")
			switch strings.ToUpper(kind) {
			case "AH":
				if o.ah != "" || len(algs) != 1 {
					return nil, fmt.Errorf("%q: AH takes one hash algorithm, once", f)
				}
				h, ok := netshHash[strings.TrimSpace(algs[0])]
				if !ok || h == "" {
					return nil, fmt.Errorf("%q: AH hash %q is not MD5, SHA1 or SHA256", f, algs[0])
				}
				o.ah = h
			case "ESP":
				if o.esp || len(algs) != 2 {
					return nil, fmt.Errorf("%q: ESP takes an encryption and an integrity algorithm, ESP[3DES,SHA1]", f)
				}
				c, ok := netshConf[strings.TrimSpace(algs[0])]
				if !ok {
					return nil, fmt.Errorf("%q: ESP encryption %q is not DES, 3DES, AES128, AES192, AES256 or None", f, algs[0])
				}
				h, ok := netshHash[strings.TrimSpace(algs[1])]
				if !ok {
					return nil, fmt.Errorf("%q: ESP integrity %q is not MD5, SHA1, SHA256 or None", f, algs[1])
				}
				if c == "null" && h == "" {
					return nil, fmt.Errorf("%q: ESP[None,None] protects nothing", f)
				}
				o.esp, o.conf, o.auth = true, c, h
			default:
				return nil, fmt.Errorf("%q: %q is not ESP or AH", f, kind)
			}
		}
		if life != "" {
			for _, part := range strings.Split(strings.ToLower(life), "/") {
				if part == "" {
					return nil, fmt.Errorf("%q: an empty lifetime", f)
				}
				unit := part[len(part)-1:]
				n, err := strconv.ParseInt(part[:len(part)-1], 10, 64)
				if err != nil || n < 1 || (unit != "k" && unit != "s") {
					return nil, fmt.Errorf("%q: lifetime %q: want Nk (kilobytes) and/or Ns (seconds), as in 100000k/900s", f, part)
				}
				if unit == "k" {
					o.kbytes = n
				} else {
					o.secs = n
				}
			}
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no security method")
	}
	return out, nil
}

// splitOffers splits at blanks, and at commas outside brackets.
func splitOffers(s string) []string {
	var out []string
	depth := 0
	start := 0
	flush := func(i int) {
		if f := strings.TrimSpace(s[start:i]); f != "" {
			out = append(out, f)
		}
		start = i + 1
	}
	for i, r := range s {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0 && (r == ' ' || r == '\t' || r == ','):
			flush(i)
		}
	}
	flush(len(s))
	return out
}

// mapOffers sets the security of a negotiate filter action from its
// offers. add records notes (lossy or not).
func mapOffers(fa *FilterAction, offers []offer, keepLegacy bool, add func(bool, string, ...any)) {
	if len(offers) == 0 {
		fa.Security = "high"
		add(false, "no qmsecmethods: Windows' default offers (3DES or DES with SHA1 or MD5) are replaced by security = \"high\" (ESP AES-256-GCM)")
		return
	}
	var esp []offer
	var ah []offer
	for _, o := range offers {
		if o.ah != "" && o.esp {
			add(true, "%s: strongSwan proposes AH or ESP, not both together: the AH part is left out, ESP kept", o.text)
			o.ah = ""
		}
		if o.esp && o.auth == "" && o.aead == "" {
			add(true, "%s: ESP encryption without integrity is not offered (strongSwan needs an integrity algorithm with a classic cipher): left out", o.text)
			continue
		}
		var weak []string
		for _, a := range []string{o.conf, o.auth, o.ah} {
			if legacy[a] {
				weak = append(weak, strings.ToUpper(a))
			}
		}
		if len(weak) > 0 {
			if !keepLegacy {
				add(true, "%s: %s %s broken or retired and not offered (keep it with --legacy-algorithms, which validate then warns about): left out", o.text, strings.Join(weak, " and "), isAre(len(weak)))
				continue
			}
			add(false, "%s: %s kept because of --legacy-algorithms; validate warns about it", o.text, strings.Join(weak, " and "))
		}
		if o.conf == "null" {
			add(false, "%s: ESP without encryption (integrity only) is esp_encryption = \"null\"; validate warns about it", o.text)
		}
		if o.esp {
			esp = append(esp, o)
		} else {
			ah = append(ah, o)
		}
	}
	var aead, classic []offer
	for _, o := range esp {
		if o.aead != "" {
			aead = append(aead, o)
		} else {
			classic = append(classic, o)
		}
	}
	if len(aead) > 0 && len(classic) > 0 {
		first, other := aead, classic
		if esp[0].aead == "" {
			first, other = classic, aead
		}
		add(true, "the offers %s are left out: strongSwan cannot mix AEAD (GCM, GMAC) and classic ciphers in one proposal, and the first offer is %s", offerTexts(other), first[0].text)
		esp = first
	}
	kept := esp
	switch {
	case len(esp) > 0 && esp[0].aead != "":
		if len(ah) > 0 {
			add(true, "the AH offers (%s) are left out: one filter action proposes ESP or AH, not both", offerTexts(ah))
		}
		fa.Security = "custom"
		fa.ESPEncryption = uniq(esp, func(o offer) string { return o.aead })
	case len(esp) > 0:
		if len(ah) > 0 {
			add(true, "the AH offers (%s) are left out: one filter action proposes ESP or AH, not both", offerTexts(ah))
		}
		fa.Security = "custom"
		fa.ESPEncryption = uniq(esp, func(o offer) string { return o.conf })
		fa.ESPIntegrity = uniq(esp, func(o offer) string { return o.auth })
		if len(fa.ESPEncryption)*len(fa.ESPIntegrity) > len(uniq(esp, func(o offer) string { return o.conf + "/" + o.auth })) {
			add(false, "the offers %s become one proposal of every listed encryption with every listed integrity algorithm: charon also accepts combinations Windows did not offer", offerTexts(esp))
		}
	case len(ah) > 0:
		kept = ah
		fa.Security = "custom"
		fa.AHIntegrity = uniq(ah, func(o offer) string { return o.ah })
		add(false, "AH authenticates the outer IP header: it does not cross NAT, and libipsec has no AH")
	default:
		fa.Security = "high"
		add(true, "no offer of qmsecmethods is left: security = \"high\" (ESP AES-256-GCM) instead")
	}
	secs, kb := int64(0), int64(0)
	if len(kept) > 0 {
		secs, kb = kept[0].secs, kept[0].kbytes
		for _, o := range kept[1:] {
			if o.secs != secs || o.kbytes != kb {
				add(false, "the offers have different lifetimes; swanmgr has one per filter action: the first offer's is used")
				break
			}
		}
	}
	if secs == 0 && kb == 0 {
		return
	}
	if fa.Security == "high" {
		fa.Security, fa.ESPEncryption = "custom", []string{"aes256gcm16"}
	}
	if secs > 0 {
		if secs < 60 {
			add(false, "lifetime %ds is below swanmgr's minimum: 60 s", secs)
			secs = 60
		}
		fa.RekeySeconds = secs
	}
	fa.RekeyKilobytes = kb
	add(false, "Windows' lifetime becomes rekey_seconds/rekey_kilobytes: charon rekeys then, and closes the SA 10%% later if the rekey fails")
}

func uniq(os []offer, f func(offer) string) []string {
	var out []string
	seen := map[string]bool{}
	for _, o := range os {
		if k := f(o); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func offerTexts(os []offer) string {
	var t []string
	for _, o := range os {
		t = append(t, o.text)
	}
	return strings.Join(t, " ")
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
