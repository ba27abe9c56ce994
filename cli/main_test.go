package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

const watchdogTrace = "SWANMGR_TEST_WATCHDOG_TRACE"

// The watchdog that apply --confirm starts is os.Executable(): in the
// tests, this test binary. Run as `confirm-watch` it exits at once, so
// that no test recurses into the tests; the tests revert themselves
// (swanmgr revert) or run the agent. With watchdogTrace set in the
// environment, it appends its arguments to the file that names.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "confirm-watch" {
		if f := os.Getenv(watchdogTrace); f != "" {
			if w, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
				fmt.Fprintln(w, strings.Join(os.Args[1:], " "))
				w.Close()
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
