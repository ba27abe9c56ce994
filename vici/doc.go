// Package vici is swanmgr's thin, typed adapter over govici for talking to
// strongSwan's charon daemon through its VICI socket.
//
// It sends what it is given and reports what charon says, in Go types:
// connections to load arrive as ready-made *govici.Message bodies (built by
// package render), secrets as bytes, and answers come back as []string,
// IKESA, ConnInfo, Version, Stats, typed errors. It knows nothing of
// swanmgr's policy model, decides nothing about what to load, and must not:
// no policy logic, no file I/O, no printing. Secret data passed to
// LoadShared and LoadKey never appears in an error or a log line.
//
// # Sessions and deadlines
//
// govici gives every wait for an answer a read deadline 5 s from now, or 5 s
// past the context's deadline if that is later; when it fires, govici's
// reader stops and the session is dead for good. This package therefore gives every command a
// context deadline (DefaultCommandTimeout unless the caller set one), so a
// slow charon ends a command with a timeout error instead of killing the
// session, and it replaces a session that died (deadline, charon restart)
// before the next command. Initiate and Terminate pass charon its own
// timeout, shorter than the context's deadline, so charon answers with a
// proper failure before we stop waiting.
//
// Plain commands share one session. ListSAs, ListConns, Initiate and
// Terminate each dial a session of their own: charon sends the events they
// stream (list-sa, list-conn, control-log) only to the client that issued
// the command, and govici mixes up a streamed command with a concurrent one
// on the same session. They subscribe to the event before sending the
// command and drain govici's event channel continuously, because govici
// drops events when a channel is full (its CallStreaming loses events beyond
// 128 in a burst); thousands of SAs are listed without loss. Watch also has
// its own session and ends when charon goes away.
//
// # Errors
//
//   - charon unreachable at dial: matches ErrUnreachable, reads
//     "cannot reach charon at PATH: is it running? (CAUSE)".
//   - charon refused (success = no): *CommandError with charon's errmsg,
//     "load-conn "x": charon: ERRMSG".
//   - command or plugin missing in this charon: *CommandError matching
//     ErrUnsupported.
//   - session broke during the command: matches ErrDisconnected.
//   - context ended: matches context.DeadlineExceeded or context.Canceled,
//     and names the socket ("charon did not answer on PATH ...").
//   - the socket answered with a packet longer than charon sends (512 KiB,
//     charon's limit, which libvici enforces too) or an empty one: matches
//     ErrNotVICI, "PATH is not a charon VICI socket". The length is checked
//     (boundedConn, under govici) before anything is allocated for it.
//   - failed Initiate: *NegotiationError, the reason in an operator's terms.
//
// Counts and WithObserver tell which commands were sent, e.g. to check that
// an unchanged apply sent no load-conn.
//
// Package vicitest is a fake charon speaking the wire protocol for tests.
//
// References: the VICI protocol,
// https://github.com/strongswan/strongswan/blob/master/src/libcharon/plugins/vici/README.md,
// and govici, https://pkg.go.dev/github.com/strongswan/govici/vici.
package vici
