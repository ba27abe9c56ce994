package status

import (
	"strconv"
	"strings"

	"github.com/swanmgr/swanmgr/vici"
)

// algText writes an algorithm with its key size as swanctl does:
// AES_GCM_16-256, AES_CBC-256/HMAC_SHA2_256_128.
func algText(encr string, encrKS int, integ string, integKS int) string {
	var parts []string
	if encr != "" {
		s := encr
		if encrKS > 0 {
			s += "-" + strconv.Itoa(encrKS)
		}
		parts = append(parts, s)
	}
	if integ != "" {
		s := integ
		if integKS > 0 {
			s += "-" + strconv.Itoa(integKS)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "/")
}

// confidential reports whether a CHILD_SA encrypts: ESP with a cipher.
// AH, ESP with NULL encryption and AES-GMAC (NULL_AES_GMAC) only
// authenticate.
func confidential(ch vici.ChildSA) bool {
	if ch.Protocol != "ESP" || ch.EncrAlg == "" {
		return false
	}
	return !strings.HasPrefix(ch.EncrAlg, "NULL")
}

// groupKeyword turns charon's name of a key exchange group into the
// keyword a policy file and swanctl.conf use: CURVE_25519 → x25519,
// ECP_256 → ecp256, ECP_256_BP → ecp256bp, MODP_2048 → modp2048,
// MODP_2048_256 → modp2048s256. Unknown names are returned unchanged.
func groupKeyword(name string) string {
	switch name {
	case "CURVE_25519":
		return "x25519"
	case "CURVE_448":
		return "x448"
	}
	parts := strings.Split(name, "_")
	if len(parts) < 2 {
		return name
	}
	for _, p := range parts[1:] {
		if p != "BP" {
			if _, err := strconv.Atoi(p); err != nil {
				return name
			}
		}
	}
	switch {
	case parts[0] == "ECP" && len(parts) == 2:
		return "ecp" + parts[1]
	case parts[0] == "ECP" && len(parts) == 3 && parts[2] == "BP":
		return "ecp" + parts[1] + "bp"
	case parts[0] == "MODP" && len(parts) == 2:
		return "modp" + parts[1]
	case parts[0] == "MODP" && len(parts) == 3:
		return "modp" + parts[1] + "s" + parts[2]
	}
	return name
}

// proposalGroup returns the key exchange group of a swanctl proposal
// ("aes256gcm16-x25519" → "x25519"), "" when it has none.
func proposalGroup(proposal string) string {
	for _, tok := range strings.Split(proposal, "-") {
		t := strings.ToLower(tok)
		switch {
		case t == "x25519" || t == "curve25519":
			return "x25519"
		case t == "x448" || t == "curve448":
			return "x448"
		case strings.HasPrefix(t, "modp") || strings.HasPrefix(t, "ecp"):
			return t
		}
	}
	return ""
}

// childSecurity describes what protects a CHILD_SA. pfsKnown says whether
// the PFS group of the rule it belongs to is known (pfsGroup, "" for none);
// false also for connections swanmgr did not load.
func childSecurity(ch vici.ChildSA, pfsKnown bool, pfsGroup string) *Security {
	proto := ch.Protocol
	if proto == "" {
		proto = "ESP"
	}
	s := &Security{
		Protocol:          ptr(proto),
		Encryption:        optStr(ch.EncrAlg),
		EncryptionKeySize: optInt(ch.EncrKeysize),
		Integrity:         optStr(ch.IntegAlg),
		IntegrityKeySize:  optInt(ch.IntegKeysize),
		Confidential:      ptr(confidential(ch)),
		SPIIn:             optStr(ch.SPIIn),
		SPIOut:            optStr(ch.SPIOut),
	}
	if ch.DHGroup != "" {
		s.DHGroup = ptr(groupKeyword(ch.DHGroup))
	}
	if pfsKnown {
		s.ConfiguredPFSGroup = optStr(pfsGroup)
	}
	text := proto + " " + algText(ch.EncrAlg, ch.EncrKeysize, ch.IntegAlg, ch.IntegKeysize)
	switch {
	case ch.DHGroup != "":
		text += ", PFS " + groupKeyword(ch.DHGroup)
	case pfsKnown && pfsGroup != "":
		// In IKEv2 the first CHILD_SA is set up with IKE_AUTH and takes
		// its keys from the IKE_SA; the group is used from the first rekey.
		text += ", keys from IKE_SA (PFS " + pfsGroup + " from the first rekey)"
	case pfsKnown:
		text += ", no PFS"
	default:
		text += ", keys from IKE_SA"
	}
	s.Text = text
	return s
}

// configuredSecurity describes what swanmgr asked for, for a rule filter
// without an SA.
func configuredSecurity(cfg *childConfig) *Security {
	if cfg == nil || len(cfg.proposals) == 0 {
		return nil
	}
	proto := "ESP"
	if cfg.ah {
		proto = "AH"
	}
	s := &Security{
		Text:                "configured: " + proto + " " + strings.Join(cfg.proposals, ", "),
		Protocol:            ptr(proto),
		ConfiguredProposals: cfg.proposals,
	}
	for _, p := range cfg.proposals {
		if g := proposalGroup(p); g != "" {
			s.ConfiguredPFSGroup = ptr(g)
			break
		}
	}
	return s
}

// ikeAlgorithms describes an IKE_SA's algorithms as swanctl writes them.
func ikeAlgorithms(sa vici.IKESA) IKEAlgorithms {
	parts := []string{}
	if t := algText(sa.EncrAlg, sa.EncrKeysize, sa.IntegAlg, sa.IntegKeysize); t != "" {
		parts = append(parts, t)
	}
	if sa.PRFAlg != "" {
		parts = append(parts, sa.PRFAlg)
	}
	if sa.DHGroup != "" {
		parts = append(parts, sa.DHGroup)
	}
	return IKEAlgorithms{
		Text:              strings.Join(parts, "/"),
		Encryption:        optStr(sa.EncrAlg),
		EncryptionKeySize: optInt(sa.EncrKeysize),
		Integrity:         optStr(sa.IntegAlg),
		IntegrityKeySize:  optInt(sa.IntegKeysize),
		PRF:               optStr(sa.PRFAlg),
		DHGroup:           optStr(sa.DHGroup),
	}
}

// authClass turns swanctl.conf's auth keyword into charon's class name, as
// list-conns reports it.
func authClass(auth string) string {
	switch {
	case auth == "psk":
		return "pre-shared key"
	case auth == "pubkey" || strings.HasPrefix(auth, "rsa") || strings.HasPrefix(auth, "ecdsa") ||
		strings.HasPrefix(auth, "ed25519") || strings.HasPrefix(auth, "ed448"):
		return "public key"
	case strings.HasPrefix(auth, "eap"):
		return "EAP"
	case strings.HasPrefix(auth, "xauth"):
		return "XAuth"
	}
	return auth
}

func ptr[T any](v T) *T { return &v }

func optStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optInt(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// secKey is what a CHILD_SA's Security depends on, but for its SPIs.
type secKey struct {
	proto, encr, integ, dh string
	encrKS, integKS        int
	managed, pfsKnown      bool
	pfsGroup               string
}

// security describes a CHILD_SA's protection, shared between rows with
// the same; the caller copies it and adds the SPIs.
func (b *builder) security(ch *vici.ChildSA, cc *connConfig) *Security {
	k := secKey{proto: ch.Protocol, encr: ch.EncrAlg, integ: ch.IntegAlg, dh: ch.DHGroup,
		encrKS: ch.EncrKeysize, integKS: ch.IntegKeysize, managed: cc != nil}
	if cc != nil {
		k.pfsKnown, k.pfsGroup = cc.pfsKnown, cc.pfsGroup
	}
	if s, ok := b.secs[k]; ok {
		return s
	}
	s := childSecurity(vici.ChildSA{Protocol: ch.Protocol, EncrAlg: ch.EncrAlg, EncrKeysize: ch.EncrKeysize,
		IntegAlg: ch.IntegAlg, IntegKeysize: ch.IntegKeysize, DHGroup: ch.DHGroup}, k.pfsKnown, k.pfsGroup)
	if b.secs == nil {
		b.secs = map[secKey]*Security{}
	}
	b.secs[k] = s
	return s
}
