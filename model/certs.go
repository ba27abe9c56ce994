package model

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// CertExpiryWarning is how close to its end a certificate's validity
// draws a warning.
const CertExpiryWarning = 30 * 24 * time.Hour

// ParseCertificate reads one X.509 certificate, PEM (the first
// CERTIFICATE block) or DER.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	if blk := firstPEM(b, "CERTIFICATE"); blk != nil {
		return x509.ParseCertificate(blk.Bytes)
	}
	if looksPEM(b) {
		return nil, errors.New("no CERTIFICATE block in the PEM data")
	}
	return x509.ParseCertificate(b)
}

// ParsePrivateKey reads a private key: PEM (PKCS#8, SEC 1 "EC PRIVATE
// KEY", PKCS#1 "RSA PRIVATE KEY") or the same in DER. Errors never quote
// the key.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	der := b
	if looksPEM(b) {
		var blk *pem.Block
		rest := b
		for {
			blk, rest = pem.Decode(rest)
			if blk == nil {
				return nil, errors.New("no PRIVATE KEY block in the PEM data")
			}
			if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
				break
			}
		}
		if _, enc := blk.Headers["Proc-Type"]; enc {
			return nil, errors.New("the key is encrypted with a passphrase; charon needs it unencrypted (or in its own secrets)")
		}
		if blk.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the key is encrypted (PKCS#8) with a passphrase; charon needs it unencrypted")
		}
		der = blk.Bytes
	}
	var k any
	var err error
	if k, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if k, err = x509.ParseECPrivateKey(der); err != nil {
			if k, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				return nil, errors.New("not a private key (PKCS#8, SEC 1 or PKCS#1; PEM or DER)")
			}
		}
	}
	switch key := k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return key.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

func looksPEM(b []byte) bool { return bytes.Contains(b, []byte("-----BEGIN ")) }

func firstPEM(b []byte, typ string) *pem.Block {
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil
		}
		if blk.Type == typ {
			return blk
		}
	}
}

// CertHasIdentity reports whether charon would take id as an identity of
// the certificate: an IP address among its IP SANs, a name among its DNS
// or e-mail SANs, or a distinguished name equal to its subject.
func CertHasIdentity(c *x509.Certificate, id string) bool {
	if ip, err := netip.ParseAddr(id); err == nil {
		for _, a := range c.IPAddresses {
			if x, ok := netip.AddrFromSlice(a); ok && x.Unmap() == ip.Unmap() {
				return true
			}
		}
		return false
	}
	if strings.Contains(id, "=") {
		return normDN(id) == normDN(c.Subject.String())
	}
	for _, n := range c.DNSNames {
		if strings.EqualFold(n, id) {
			return true
		}
	}
	for _, n := range c.EmailAddresses {
		if strings.EqualFold(n, id) {
			return true
		}
	}
	return false
}

// normDN compares distinguished names loosely: charon writes "C=CH, O=x,
// CN=y" in the certificate's order, Go writes them reversed without spaces.
func normDN(s string) string {
	var parts []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '/' }) {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, strings.ToLower(p))
		}
	}
	// Order-insensitive: sort a copy.
	for i := 1; i < len(parts); i++ {
		for j := i; j > 0 && parts[j] < parts[j-1]; j-- {
			parts[j], parts[j-1] = parts[j-1], parts[j]
		}
	}
	return strings.Join(parts, ",")
}

// certIdentities lists what a certificate vouches for, for messages.
func certIdentities(c *x509.Certificate) string {
	var ids []string
	for _, a := range c.IPAddresses {
		ids = append(ids, a.String())
	}
	ids = append(ids, c.DNSNames...)
	ids = append(ids, c.EmailAddresses...)
	ids = append(ids, fmt.Sprintf("%q", c.Subject.String()))
	return strings.Join(ids, ", ")
}

// checkCertAuth validates the material of a method = "certificate": that
// each file parses, the certificates are valid now (a warning within
// CertExpiryWarning of the end), the host certificate is signed by the
// named CA, the key belongs to the certificate, and the certificate holds
// this endpoint's identity. Messages name files, never key material.
func (v *validator) checkCertAuth(path, where string, ra ResolvedAuth, caFile, certFile, keyFile, localID string) {
	if ra.CA == nil || ra.Cert == nil || ra.Key.IsZero() {
		return // unreadable: readFile said so
	}
	k := caFile + "\x00" + certFile + "\x00" + keyFile + "\x00" + localID
	if v.certsChecked[k] {
		return
	}
	if v.certsChecked == nil {
		v.certsChecked = map[string]bool{}
	}
	v.certsChecked[k] = true
	now := v.o.now()
	ca, err := ParseCertificate(ra.CA)
	if err != nil {
		v.errf(path+".ca", where, "ca %s is not a certificate (PEM or DER): %v", caFile, err)
	}
	cert, err := ParseCertificate(ra.Cert)
	if err != nil {
		v.errf(path+".certificate", where, "certificate %s is not a certificate (PEM or DER): %v", certFile, err)
	}
	key, err := ParsePrivateKey([]byte(ra.Key.Reveal()))
	if err != nil {
		v.errf(path+".private_key", where, "private_key %s: %v", keyFile, err)
	}
	if ca != nil {
		v.certValidity(path+".ca", where, "ca", caFile, ca, now)
		if !ca.IsCA {
			v.errf(path+".ca", where, "ca %s (%q) is not a CA certificate (no basicConstraints CA:TRUE); name the certificate of the CA that signed the hosts' certificates", caFile, ca.Subject.String())
		}
	}
	if cert != nil {
		v.certValidity(path+".certificate", where, "certificate", certFile, cert, now)
	}
	if ca != nil && cert != nil && ca.IsCA {
		if err := cert.CheckSignatureFrom(ca); err != nil {
			v.errf(path+".certificate", where, "certificate %s (issued by %q) is not signed by the CA in %s (%q): the peer, trusting that CA, would refuse it",
				certFile, cert.Issuer.String(), caFile, ca.Subject.String())
		}
	}
	if cert != nil && key != nil {
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if pub, ok := key.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
			v.errf(path+".private_key", where, "private_key %s does not belong to certificate %s (their public keys differ)", keyFile, certFile)
		}
	}
	if cert != nil && localID != "" && !CertHasIdentity(cert, localID) {
		v.warnf(path+".certificate", where, "certificate %s does not hold this endpoint's identity %q (it holds %s): charon then authenticates with the certificate's subject, and a peer expecting %q refuses it; set endpoint.id to one of the certificate's identities or issue a certificate with %q as subjectAltName",
			certFile, localID, certIdentities(cert), localID, localID)
	}
}

func (v *validator) certValidity(path, where, key, file string, c *x509.Certificate, now time.Time) {
	const day = "2006-01-02 15:04 UTC"
	switch {
	case now.Before(c.NotBefore):
		v.errf(path, where, "%s %s is not valid yet: valid from %s (check this computer's clock)", key, file, c.NotBefore.UTC().Format(day))
	case now.After(c.NotAfter):
		v.errf(path, where, "%s %s expired on %s", key, file, c.NotAfter.UTC().Format(day))
	case c.NotAfter.Sub(now) < CertExpiryWarning:
		v.warnf(path, where, "%s %s expires on %s, in %d days: renew it", key, file, c.NotAfter.UTC().Format(day), int(c.NotAfter.Sub(now).Hours()/24))
	}
}
