package render

import (
	"crypto/sha256"
	"reflect"

	"github.com/swanmgr/swanmgr/model"
)

// RuleDigestForTest is the digest of a rule's fields a connection's key
// in a Prior is made of.
func RuleDigestForTest(r model.ResolvedRule) [32]byte {
	return sha256.Sum256(appendRule(nil, &r, true))
}

// RuleValueDigestForTest is RuleDigestForTest as appendValue makes it.
func RuleValueDigestForTest(r model.ResolvedRule) [32]byte {
	return sha256.Sum256(appendValue(nil, reflect.ValueOf(&r).Elem()))
}

// GlobalDigestForTest is the digest of what every connection's key in a
// Prior holds besides its rules.
func GlobalDigestForTest(a *model.Assigned) [32]byte {
	return sha256.Sum256(appendGlobal(nil, a))
}

// PriorFormForTest wraps body as WritePrior does (magic, salt, checksum).
func PriorFormForTest(program string, body []byte) []byte {
	salt := sha256.Sum256([]byte(program + "\x00" + priorSchema))
	b := append([]byte(priorMagic), salt[:]...)
	b = append(b, body...)
	sum := sha256.Sum256(body)
	return append(b, sum[:]...)
}

// PriorBodyForTest is a form's body: what is between the salt and the
// checksum.
func PriorBodyForTest(form []byte) []byte {
	return form[len(priorMagic)+sha256.Size : len(form)-sha256.Size]
}
