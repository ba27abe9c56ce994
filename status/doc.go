// Package status is swanmgr's IPSecMon: what charon has negotiated, named
// by the policy rules that produced it.
//
// It joins charon's answers (list-sas, get-conns, list-conns, stats,
// get-counters, version and, while watching, its events) with swanmgr's
// record of what it assigned (assign.Record) into one model, Status: one
// row per CHILD_SA with IPSecMon's columns, one row for every rule filter
// of the assigned policy that has no SA ("not established",
// "negotiating"), rows for connections swanmgr did not load ("not
// managed"), the IKE_SAs, and IPSecMon's statistics. The model is written
// as an aligned table (WriteTable) or as JSON (WriteJSON, schema in
// docs/status-json.md).
//
// The package is split by what touches the daemon:
//
//   - model.go, build.go (joining charon's answers with the record),
//     rows.go (a row per CHILD_SA or rule filter), ikerows.go,
//     security.go, statistics.go, events.go, table.go, textfmt.go,
//     json.go and jsonrow.go are pure: they never talk to charon, read
//     files or look at the clock (the time of a snapshot comes in with
//     it), so the same input always gives the same output; golden tests in
//     testdata/ pin it down (go test ./status -update rewrites them).
//   - collect.go (Collect) asks charon, through the small Daemon
//     interface that *vici.Client satisfies, and record.go reads
//     swanmgr's record (RecordReader).
//   - watch.go (Watch, WatchEach) keeps collecting: at each tick and at
//     once when charon raises an event, reconnecting after a charon
//     restart.
//
// What it must not do: invent a figure. A number charon does not report is
// nil in the model (null in JSON, "n/a" in the table), and a number swanmgr
// counts itself from charon's events says so (Figure.Source). It changes
// nothing in charon: every command it sends is read-only.
package status
