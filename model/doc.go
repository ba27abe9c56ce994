// Package model is swanmgr's policy model: the Windows IPsec vocabulary
// (endpoint, filter lists, filter actions, policies made of rules,
// authentication methods) as Go types, loaded strictly from a TOML policy
// file and validated.
//
// Load decodes a file, rejecting TOML syntax errors, unknown keys and wrong
// types with the file, line and key path; Validate then collects every
// semantic problem (not only the first), each naming where it is. Warnings
// (an inline preshared key, a short one) are returned beside a valid result.
// ParseValidate does both and reports unknown keys together with the
// semantic problems. Before decoding, a file over MaxFileSize, nesting over
// MaxNesting or a key of more than MaxKeyParts parts is refused: the
// decoder's cost grows with the square of a key's depth.
//
// A policy can be a folder of *.toml files (dir.go): ReadFile gives them
// as one bundle of bytes, parse decodes each file on its own and merges
// them into one File whose lines are numbered across the files;
// File.Locate turns such a line back into a file and its line, and every
// Problem names the file a key is in.
//
// The package is pure: it reads the policy file and the secret files it
// names, and nothing else. It never talks to charon and never prints a
// secret: Secret values are only reachable through Secret.Reveal.
package model
