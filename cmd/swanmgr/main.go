// Command swanmgr manages strongSwan's IPsec policy the way Windows IPsec
// did: an assigned policy of rules, each linking a filter list to a filter
// action. See the README and docs/ for the policy file and the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/swanmgr/swanmgr/cli"
)

func main() {
	// SWANMGR_CPUPROFILE=FILE writes a CPU profile of the run (for
	// docs/performance.md: misses are reported with a profile).
	if p := os.Getenv("SWANMGR_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "swanmgr: SWANMGR_CPUPROFILE: %v\n", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "swanmgr: SWANMGR_CPUPROFILE: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
	}
	// SWANMGR_TRACE=FILE writes an execution trace of the run (go tool
	// trace FILE): the steps of an apply are its regions.
	if p := os.Getenv("SWANMGR_TRACE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "swanmgr: SWANMGR_TRACE: %v\n", err)
			os.Exit(2)
		}
		if err := trace.Start(f); err != nil {
			fmt.Fprintf(os.Stderr, "swanmgr: SWANMGR_TRACE: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	pprof.StopCPUProfile()
	trace.Stop()
	// SWANMGR_MEMPROFILE=FILE writes a heap profile at the end of the run
	// (go tool pprof -sample_index=alloc_space: what the run allocated).
	if p := os.Getenv("SWANMGR_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}
