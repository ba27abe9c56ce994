package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// CertHost is a host to issue a lab certificate for.
type CertHost struct {
	Name string     // becomes the CN and a DNS subjectAltName
	Addr netip.Addr // becomes an IP subjectAltName: charon's default identity
}

// CertOptions describe a throwaway lab CA and its host certificates.
type CertOptions struct {
	// CAName is the CA's common name; "" = "swanmgr lab CA".
	CAName string
	// Hosts get one certificate and key each; nil = alice, bob and eve at
	// their lab addresses.
	Hosts []CertHost
	// Validity of every certificate; 0 = 10 years. Certificates start one
	// hour in the past so that a clock a little behind still accepts them.
	Validity time.Duration
	// NotBefore overrides the start (tests of expired or future
	// certificates); zero = now - 1 hour.
	NotBefore time.Time
}

// IssuedCerts are the files IssueCerts wrote.
type IssuedCerts struct {
	CA    string            // ca.pem
	Certs map[string]string // host name -> <host>.pem
	Keys  map[string]string // host name -> <host>.key (mode 0600)
}

// DefaultCertHosts are alice, bob and eve at their flat-topology addresses.
func DefaultCertHosts() []CertHost {
	var out []CertHost
	for _, n := range []string{"alice", "bob", "eve"} {
		out = append(out, CertHost{Name: n, Addr: knownAddrs[n]})
	}
	return out
}

// CertHosts are the lab's hosts at their addresses in this lab.
func (l *Lab) CertHosts() []CertHost {
	var out []CertHost
	for _, h := range l.Hosts {
		out = append(out, CertHost{Name: h.Name, Addr: h.Addr})
	}
	return out
}

// IssueCerts creates a lab CA (ECDSA P-256) and, for each host, a key and
// a certificate signed by it with the host's address and name as
// subjectAltNames, and writes them into dir as ca.pem, <host>.pem and
// <host>.key (PKCS#8 PEM, mode 0600). The CA's private key is not kept:
// the set is for one lab, not for issuing more later. These are lab-only
// credentials: never use them outside the lab.
func IssueCerts(dir string, o CertOptions) (*IssuedCerts, error) {
	if o.CAName == "" {
		o.CAName = "swanmgr lab CA"
	}
	if o.Hosts == nil {
		o.Hosts = DefaultCertHosts()
	}
	if o.Validity == 0 {
		o.Validity = 10 * 365 * 24 * time.Hour
	}
	start := o.NotBefore
	if start.IsZero() {
		start = time.Now().Add(-time.Hour)
	}
	start = start.UTC().Truncate(time.Second)
	end := start.Add(o.Validity)
	for _, h := range o.Hosts {
		if !hostRE.MatchString(h.Name) || !h.Addr.IsValid() {
			return nil, fmt.Errorf("lab: certs: host %q at %v: want a lab host name and an address", h.Name, h.Addr)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: certs: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("lab: certs: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"swanmgr lab"}, CommonName: o.CAName},
		NotBefore:             start,
		NotAfter:              end,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("lab: certs: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("lab: certs: CA: %w", err)
	}
	out := &IssuedCerts{CA: filepath.Join(dir, "ca.pem"), Certs: map[string]string{}, Keys: map[string]string{}}
	if err := writePEM(out.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return nil, err
	}
	for _, h := range o.Hosts {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("lab: certs: %w", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{Organization: []string{"swanmgr lab"}, CommonName: h.Name},
			NotBefore:             start,
			NotAfter:              end,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IPAddresses:           []net.IP{net.IP(h.Addr.AsSlice())},
			DNSNames:              []string{h.Name},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("lab: certs: %s: %w", h.Name, err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("lab: certs: %s: %w", h.Name, err)
		}
		cp, kp := filepath.Join(dir, h.Name+".pem"), filepath.Join(dir, h.Name+".key")
		if err := writePEM(cp, "CERTIFICATE", der, 0o644); err != nil {
			return nil, err
		}
		if err := writePEM(kp, "PRIVATE KEY", kder, 0o600); err != nil {
			return nil, err
		}
		out.Certs[h.Name], out.Keys[h.Name] = cp, kp
	}
	return out, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

// writePEM writes one PEM block; an existing file is replaced, and its
// mode set to mode even if it had another (a key must end up 0600).
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: certs: %w", err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("lab: certs: %w", err)
	}
	return os.Chmod(path, mode)
}
