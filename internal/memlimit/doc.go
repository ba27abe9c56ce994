// Package memlimit keeps the Go runtime's soft memory limit a little above
// what the program holds, so that a short run does not let its heap grow
// to twice its largest live size before collecting (GOGC=100), which at a
// one-rule change of 5,000 rules was some 25 MB of memory beyond what the
// run needed. The limit follows the live heap after each collection
// (Floor, or twice the live heap less Slack, none from Off on), so a large
// policy is not collected over and over against a limit set for a small
// one.
//
// StartLazy is the other way round, for a long-running monitor whose heap
// is small and whose garbage is most of its work (status --watch): the
// collector runs less often (GOGC=400), and the limit keeps the heap
// within what GOGC=100 would allow beyond 48 MiB.
//
// StartWide is Start with a wider floor (WideFloor, 80 MiB), for runs that
// allocate much and keep little (validate, render): the collector runs at
// GOGC=200 (WidePercent) and the limit bounds what that would let grow
// past what a 10,000-rule policy needs; a heap too large for a limit is
// collected at GOGC=100.
//
// StartBrief is Start for runs that end when their work is done (apply,
// plan, revert): the collector runs at GOGC=200 (BriefPercent) below the
// limit, so that the limit, not GOGC=100, says when to collect.
//
// It does nothing when the operator set GOMEMLIMIT or GOGC, and leaves the
// limit alone while collection is turned off (status sets its own).
package memlimit
