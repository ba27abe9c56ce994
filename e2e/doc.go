// Package e2e holds swanmgr's end-to-end tests: real charon daemons in
// network namespaces the tests create (package lab), driven through the
// swanmgr command line and checked over VICI, in the charon logs and on
// the wire with tcpdump. Traffic never leaves the lab's namespaces.
//
// The tests need root, strongSwan (charon, swanctl, the kernel-libipsec
// plugin) and tcpdump. Without them they skip, unless SWANMGR_E2E=1 is
// set (CI sets it): then a missing prerequisite fails the suite.
//
//	SWANMGR_E2E=1 go test ./e2e/
package e2e
