package model

import "strings"

// The algorithm keywords strongSwan 5.9 accepts in ESP and AH proposals
// (src/libstrongswan/crypto/proposal/proposal_keywords_static.txt, 5.9.8;
// strongSwan's "IKEv2 cipher suites" documentation). Keeping the list
// here lets validation reject a typo before charon silently drops a
// proposal it cannot parse.

var (
	// AEAD encryption: no separate integrity algorithm. AES-GMAC is
	// integrity only (NULL encryption with a GMAC ICV) but is written in
	// the encryption position like the AEADs.
	aeadAlgs = keywordSet(
		"aes128ccm", "aes128ccm8", "aes128ccm12", "aes128ccm16", "aes128ccm64", "aes128ccm96", "aes128ccm128",
		"aes192ccm", "aes192ccm8", "aes192ccm12", "aes192ccm16", "aes192ccm64", "aes192ccm96", "aes192ccm128",
		"aes256ccm", "aes256ccm8", "aes256ccm12", "aes256ccm16", "aes256ccm64", "aes256ccm96", "aes256ccm128",
		"aes128gcm", "aes128gcm8", "aes128gcm12", "aes128gcm16", "aes128gcm64", "aes128gcm96", "aes128gcm128",
		"aes192gcm", "aes192gcm8", "aes192gcm12", "aes192gcm16", "aes192gcm64", "aes192gcm96", "aes192gcm128",
		"aes256gcm", "aes256gcm8", "aes256gcm12", "aes256gcm16", "aes256gcm64", "aes256gcm96", "aes256gcm128",
		"aes128gmac", "aes192gmac", "aes256gmac", "chacha20poly1305",
		"camellia128ccm8", "camellia128ccm12", "camellia128ccm16", "camellia128ccm64", "camellia128ccm96", "camellia128ccm128",
		"camellia192ccm8", "camellia192ccm12", "camellia192ccm16", "camellia192ccm64", "camellia192ccm96", "camellia192ccm128",
		"camellia256ccm8", "camellia256ccm12", "camellia256ccm16", "camellia256ccm64", "camellia256ccm96", "camellia256ccm128",
	)
	// Classic encryption, used with an integrity algorithm.
	encAlgs = keywordSet(
		"aes", "aes128", "aes192", "aes256", "aes128ctr", "aes192ctr", "aes256ctr",
		"camellia", "camellia128", "camellia192", "camellia256", "camellia128ctr", "camellia192ctr",
		"camellia256ctr", "3des", "des", "cast128", "blowfish", "blowfish128", "blowfish192",
		"blowfish256", "twofish", "twofish128", "twofish192", "twofish256", "serpent", "serpent128",
		"serpent192", "serpent256", "null",
	)
	integAlgs = keywordSet(
		"md5", "md5_128", "sha1", "sha", "sha1_160", "sha256", "sha2_256", "sha256_96", "sha2_256_96",
		"sha384", "sha2_384", "sha512", "sha2_512", "aesxcbc", "camelliaxcbc", "aescmac",
	)
	dhGroups = keywordSet(
		"modp768", "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144", "modp8192",
		"modp1024s160", "modp2048s224", "modp2048s256", "ecp192", "ecp224", "ecp256", "ecp384",
		"ecp521", "ecp224bp", "ecp256bp", "ecp384bp", "ecp512bp", "curve25519", "x25519",
		"curve448", "x448",
	)
	// Weak algorithms are accepted only when custom security names them,
	// and then with a warning.
	weakAlgs = keywordSet("des", "3des", "md5", "md5_128", "sha1", "sha", "sha1_160", "null",
		"modp768", "modp1024", "modp1536", "modp1024s160", "ecp192", "blowfish", "cast128")
)

func keywordSet(ks ...string) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// IsAEAD reports whether an ESP encryption keyword is an AEAD algorithm.
func IsAEAD(alg string) bool { return aeadAlgs[strings.ToLower(alg)] }

// IsWeak reports whether an algorithm keyword is considered weak today.
func IsWeak(alg string) bool { return weakAlgs[strings.ToLower(alg)] }
