// Package render turns a validated, assigned policy (model.Assigned) into
// what charon loads: swanctl connections with one child per filter,
// preshared-key secrets, certificates and private keys.
//
// It builds one intermediate representation (Result: connections whose
// settings are an ordered Section tree, plus secrets, certificates and
// keys) and produces from it both the swanctl.conf text (WriteSwanctl) and
// the VICI messages for load-conn, load-shared, load-cert and load-key, so
// the two can never disagree. Names are stable across runs, unique, valid
// swanctl.conf section names, and map back to policy, rule and filter
// through Conn.Origin and Conn.Children. All negotiate rules to one peer
// share that peer's connection (charon selects one peer config per peer),
// so each child names its own rule (ChildOrigin.Rule). Besides the rules,
// it may add the IPv6 neighbour discovery exemption (nd.go) and default
// response children; Result.Warnings says what a backend will do
// differently from Windows with a policy it accepts (warnings.go).
//
// A Prior (prior.go, priorkey.go) holds the connections an earlier Render
// made, under keys of everything each was made from; given one, Render
// takes those whose key it holds instead of rendering them again, with
// the same result (a one-rule change of thousands renders one). Its form
// is bytes that the caller keeps (apply: beside its record).
//
// The package is pure: no file, network or daemon I/O. Secrets are written
// only where explicitly asked for (WriteOptions.ShowSecrets) and otherwise
// replaced by a placeholder.
package render
