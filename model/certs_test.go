package model_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swanmgr/swanmgr/model"
)

// testCA issues certificates for the certificate cases.
type testCA struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, der: der, key: key}
}

// host issues a host certificate valid from nb to na with ip as SAN; it
// returns the certificate (DER) and its key (PKCS#8 DER).
func (ca *testCA) host(t *testing.T, ip string, nb, na time.Time) (cert, key []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "host " + ip},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	return der, kd
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

const certAuth = `authentication = [ { method = "certificate", ca = "ca.pem", certificate = "host.pem", private_key = "host.key" } ]`

func TestValidateCertificates(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "Lab CA")
	other := newTestCA(t, "Other CA")
	good, goodKey := ca.host(t, "10.0.0.1", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	_, strayKey := ca.host(t, "10.0.0.1", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	expired, expiredKey := ca.host(t, "10.0.0.1", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	future, futureKey := ca.host(t, "10.0.0.1", now.Add(24*time.Hour), now.Add(48*time.Hour))
	soon, soonKey := ca.host(t, "10.0.0.1", now.Add(-time.Hour), now.Add(10*24*time.Hour))
	foreign, foreignKey := other.host(t, "10.0.0.1", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	elsewhere, elsewhereKey := ca.host(t, "10.9.9.9", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	keyPEM := pemOf("PRIVATE KEY", goodKey)

	files := func(caData, cert, key string, keyMode uint32) map[string]file {
		return map[string]file{
			"ca.pem":   {caData, 0o644},
			"host.pem": {cert, 0o644},
			"host.key": {key, os.FileMode(keyMode)},
		}
	}
	caPEM := pemOf("CERTIFICATE", ca.der)
	edit := []string{`{ method = "psk", secret_file = "k.psk" } ]`, certAuth[len(`authentication = [ `):]}
	cases := []vcase{
		{name: "valid PEM", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", good), keyPEM, 0o600), ok: true},
		{name: "one peer, a certificate rule and a preshared key rule", file: files(caPEM, pemOf("CERTIFICATE", good), keyPEM, 0o600),
			add:  "  [[policy.rule]]\n  name = \"R2\"\n  filter_list = \"FL\"\n  filter_action = \"FA\"\n  " + certAuth + "\n",
			errs: []string{`t.toml:27: policy "P" rule "R2": peer 10.0.0.2 is also the peer of rule "R", and the rules use different authentication methods (psk and certificate): strongSwan keeps one peer configuration`, `give rule "R2" the authentication of rule "R"`}, nerrs: 1},
		{name: "valid DER", edit: edit, file: files(string(ca.der), string(good), string(goodKey), 0o600), ok: true},
		{name: "key readable by others", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", good), keyPEM, 0o644),
			errs: []string{"private_key host.key is readable by group or others (mode 0644): run chmod 600"}},
		{name: "key missing", edit: edit, file: map[string]file{"ca.pem": {caPEM, 0o644}, "host.pem": {pemOf("CERTIFICATE", good), 0o644}},
			errs: []string{"private_key host.key: no such file"}},
		{name: "key of another certificate", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", good), pemOf("PRIVATE KEY", strayKey), 0o600),
			errs: []string{"private_key host.key does not belong to certificate host.pem (their public keys differ)"}, nerrs: 1},
		{name: "expired", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", expired), pemOf("PRIVATE KEY", expiredKey), 0o600),
			errs: []string{"certificate host.pem expired on"}, nerrs: 1},
		{name: "not yet valid", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", future), pemOf("PRIVATE KEY", futureKey), 0o600),
			errs: []string{"certificate host.pem is not valid yet: valid from"}, nerrs: 1},
		{name: "expires soon", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", soon), pemOf("PRIVATE KEY", soonKey), 0o600),
			ok: true, warns: []string{"certificate host.pem expires on"}},
		{name: "other CA", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", foreign), pemOf("PRIVATE KEY", foreignKey), 0o600),
			errs: []string{`certificate host.pem (issued by "CN=Other CA") is not signed by the CA in ca.pem ("CN=Lab CA")`}, nerrs: 1},
		{name: "ca is a host certificate", edit: edit, file: files(pemOf("CERTIFICATE", good), pemOf("CERTIFICATE", good), keyPEM, 0o600),
			errs: []string{"ca ca.pem (\"CN=host 10.0.0.1\") is not a CA certificate"}},
		{name: "not a certificate", edit: edit, file: files(caPEM, "hello\n", keyPEM, 0o600),
			errs: []string{"certificate host.pem is not a certificate (PEM or DER)"}},
		{name: "not a key", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", good), "-----BEGIN PRIVATE KEY-----\nbGFiLW9ubHkta2V5LTAxMjM0NTY3ODktYWJjZGVm\n-----END PRIVATE KEY-----\n", 0o600),
			errs: []string{"private_key host.key: not a private key"}},
		{name: "bad peer_id", edit: []string{`{ method = "psk", secret_file = "k.psk" } ]`, `{ method = "certificate", ca = "ca.pem", certificate = "host.pem", private_key = "host.key", peer_id = "a {b}" } ]`},
			file: files(caPEM, pemOf("CERTIFICATE", good), keyPEM, 0o600), errs: []string{`peer_id "a {b}" is not a usable IKE identity`}, nerrs: 1},
		{name: "identity not in certificate", edit: edit, file: files(caPEM, pemOf("CERTIFICATE", elsewhere), pemOf("PRIVATE KEY", elsewhereKey), 0o600),
			ok: true, warns: []string{`certificate host.pem does not hold this endpoint's identity "10.0.0.1" (it holds 10.9.9.9`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs, warns := c.run(t)
			for _, got := range append(append([]string{}, errs...), warns...) {
				if strings.Contains(got, "bGFiLW9ubHkta2V5") || strings.Contains(got, "PRIVATE KEY-----") {
					t.Errorf("a message shows key material: %s", got)
				}
			}
			if c.ok && len(errs) > 0 {
				t.Errorf("want valid, got:\n%s", strings.Join(errs, "\n"))
			}
			if c.nerrs > 0 && len(errs) != c.nerrs {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), c.nerrs, strings.Join(errs, "\n"))
			}
			expect(t, "error", c.errs, errs)
			expect(t, "warning", c.warns, warns)
			if c.ok && len(c.warns) == 0 && len(warns) > 0 {
				t.Errorf("unexpected warnings:\n%s", strings.Join(warns, "\n"))
			}
		})
	}
}

func TestCertHasIdentity(t *testing.T) {
	ca := newTestCA(t, "Lab CA")
	der, _ := ca.host(t, "10.0.0.1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	c, err := model.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"10.0.0.1": true, "10.0.0.2": false, "CN=host 10.0.0.1": true, "cn=other": false, "alice": false} {
		if got := model.CertHasIdentity(c, id); got != want {
			t.Errorf("CertHasIdentity(%q) = %v, want %v", id, got, want)
		}
	}
}
