// Package cli is swanmgr's command line: it wires flags to the model,
// render, vici, apply and lab packages and prints their results. It holds
// no policy logic of its own. Run is the whole program, testable with
// buffers for stdout and stderr.
package cli
