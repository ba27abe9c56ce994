// Package bench holds swanmgr's benchmarks against real charon daemons in
// the network-namespace lab, each measured side by side with swanctl in
// the same run. They need root and strongSwan, like the e2e tests, and
// skip without them unless SWANMGR_E2E=1. docs/performance.md has the
// commands and the results.
package bench
