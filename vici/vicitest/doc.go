// Package vicitest is a fake charon for tests: a goroutine speaking the VICI
// wire protocol on a temporary unix socket. It answers the configuration
// commands (load-conn, get-conns, load-shared, ...) from in-memory state,
// records every command it receives, streams events only to clients that
// registered for them (as charon does), and lets a test override any command
// with its own Handler. NotCharon is the opposite: a socket whose peer is
// not charon at all, for tests of what a client makes of that.
//
// It knows nothing of package vici: any VICI client can be pointed at
// Server.Socket(). It imitates charon 5.9.8's shapes closely enough for unit
// tests; it does not parse connections the way charon does (an unknown
// option is not refused unless a test installs a handler that refuses it).
package vicitest
