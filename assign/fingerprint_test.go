package assign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/swanmgr/swanmgr/model"
	"github.com/swanmgr/swanmgr/render"
)

// fingerprintBefore is fingerprint as it was before one HMAC served many
// secrets: records keep its fingerprints.
func fingerprintBefore(key []byte, s render.Secret) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s.Type))
	for _, o := range s.Owners {
		m.Write([]byte{0})
		m.Write([]byte(o))
	}
	m.Write([]byte{0, 0})
	m.Write([]byte(s.Data.Reveal()))
	return hex.EncodeToString(m.Sum(nil))
}

// One fingerprinter gives, secret after secret (longer and shorter), the
// fingerprints recorded before; and it keeps no secret value.
func TestFingerprintAsBefore(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secrets := []render.Secret{
		{Type: "IKE", Owners: []string{"172.16.98.231", "172.31.67.244"}, Data: model.NewSecret("a-preshared-key-of-some-length-1234")},
		{Type: "IKE", Owners: []string{"10.1.0.7"}, Data: model.NewSecret("x")},
		{Type: "IKE", Data: model.NewSecret(strings.Repeat("long", 300))},
		{Type: "IKE", Owners: []string{"a", "b", "c"}, Data: model.NewSecret("")},
		{Type: "EAP", Owners: []string{"172.16.98.231"}, Data: model.NewSecret("a-preshared-key-of-some-length-1234")},
	}
	f := newFingerprinter(key)
	for round := range 2 {
		for i, s := range secrets {
			if got, want := f.of(s), fingerprintBefore(key, s); got != want {
				t.Errorf("round %d, secret %d: %s, want %s", round, i, got, want)
			}
			if got, want := fingerprint(key, s), fingerprintBefore(key, s); got != want {
				t.Errorf("fingerprint of secret %d: %s, want %s", i, got, want)
			}
		}
	}
	if strings.Contains(string(f.buf[:cap(f.buf)]), "long") || strings.Contains(string(f.buf[:cap(f.buf)]), "preshared") {
		t.Error("the fingerprinter's buffer keeps a secret value")
	}
}
