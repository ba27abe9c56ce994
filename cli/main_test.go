package cli

import (
	"os"
	"testing"
)

// The watchdog that apply --confirm starts is os.Executable(): in the
// tests, this test binary. Run as `confirm-watch` it exits at once, so
// that no test recurses into the tests; the tests revert themselves
// (swanmgr revert) or run the agent.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "confirm-watch" {
		os.Exit(0)
	}
	os.Exit(m.Run())
}
