// Package metrics exports swanmgr's status view of one charon to
// Prometheus: IPSecMon's statistics as counters and gauges, bytes and
// packets per policy rule and peer, whether each rule of the assigned
// policy is up, and whether charon answers.
//
// The Exporter is a prometheus.Collector that asks charon on every scrape
// (bounded by a timeout), so a scrape never shows stale data. Labels are
// bounded by the configuration: policy, rule and peer, never SPIs or
// unique ids. Byte and packet counters stay monotonic across rekeys and SAs
// that close: the exporter keeps the last value of every SA it saw and
// adds it to a running total when the SA is gone. Figures charon does not
// keep (IKE_SAs and CHILD_SAs established, key additions, authentication
// failures) are counted from charon's events by a watcher the exporter
// runs (Run); they start at zero when the exporter starts.
//
// It changes nothing in charon (read-only VICI commands) and serves
// nothing itself: the caller mounts Handler.
package metrics
