package lab_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"

	"github.com/swanmgr/swanmgr/lab"
)

// checkIssued verifies every host certificate against the CA, for the
// host's address, and that keys are 0600.
func checkIssued(t *testing.T, got *lab.IssuedCerts) {
	t.Helper()
	read := func(p string) *x509.Certificate {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca := read(got.CA)
	if !ca.IsCA {
		t.Errorf("the CA certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for name, p := range got.Certs {
		c := read(p)
		if len(c.IPAddresses) != 1 || len(c.DNSNames) != 1 || c.DNSNames[0] != name {
			t.Errorf("%s: SANs %v %v", name, c.IPAddresses, c.DNSNames)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := c.VerifyHostname(c.IPAddresses[0].String()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		st, err := os.Stat(got.Keys[name])
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: key mode %04o", name, st.Mode().Perm())
		}
	}
}
