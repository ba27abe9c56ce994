// Package diagnose words why an SA did not come up the way the policy
// says, for an operator: the reasons `swanmgr initiate` prints, the policy
// agent logs and JSON output carries, so that all of them use the same
// words (the knowledge-base article's where it has them).
//
// It is pure: it reads charon's answers (vici types) and swanmgr's record
// (assign.RecordConn) handed to it, and does no I/O of its own.
package diagnose
