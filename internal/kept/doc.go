// Package kept holds the last few values made for keys, for work an
// apply asks for more than once (a ruleset's hash, the policy's
// fingerprint): a small ring, safe for concurrent use, that forgets the
// oldest. Keys hold weak pointers to what they are of, so that nothing
// is kept alive by being remembered.
package kept
