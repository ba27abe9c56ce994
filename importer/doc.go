// Package importer turns Windows IPsec scripts into a swanmgr policy: the
// `netsh ipsec static` commands of Windows 2000's successors (add policy,
// add filterlist, add filter, add filteraction, add rule, set defaultrule,
// set store) and the `netsh advfirewall consec add rule` connection
// security rules of newer Windows.
//
// Parse reads a script into commands (netsh prefix or not, `-c ipsec
// static` contexts, pushd/popd, quotes, comments, `^` line continuations,
// abbreviated and positional parameters), each with its file and line.
// Netsh and Consec map the commands onto the policy model and return a
// Result: the policy as a data structure (written as TOML by Result.TOML,
// never by pasting script text), the preshared keys to be written to key
// files, and Notes. Every option without a faithful strongSwan equivalent
// becomes a Note with the script's file:line saying what was done instead;
// Lossy notes make Result.Partial true, and the command refuses to write
// a partial import unless asked to.
//
// The package is pure: it reads no files and writes none. The caller
// writes Result.Keys (mode 0600) next to the output and the TOML, and
// validates the output with model. A preshared key appears only in
// Result.Keys, as a model.Secret: never in the TOML, a Note or an error.
package importer
