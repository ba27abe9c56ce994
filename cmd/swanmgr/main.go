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
	"strconv"
	"strings"
	"syscall"

	"github.com/swanmgr/swanmgr/cli"
	"github.com/swanmgr/swanmgr/internal/memlimit"
)

func main() {
	// The commands that apply keep the soft memory limit near their live
	// heap (internal/memlimit): a one-rule change at 5,000 rules peaks 25
	// MB lower than with GOGC=100 alone, at no measurable cost in time;
	// those that end when done collect at GOGC=200 below it
	// (memlimit.StartBrief), so that the limit says when.
	// validate and render allocate much for little kept (the decoder):
	// that limit cost them a fifth more time; theirs is wider
	// (memlimit.WideFloor) and their collector lazier below it (GOGC=200,
	// memlimit.WidePercent): fewer collections of the decoder's garbage,
	// under 100 MB at 10,000 rules.
	// status --watch collects less often: its heap is small and its
	// garbage (every SA listed again each second) a quarter of its CPU.
	switch command(os.Args) {
	case "apply", "plan", "revert":
		memlimit.StartBrief()
	case "agent", "confirm-watch":
		memlimit.Start()
	case "validate", "render":
		memlimit.StartWide()
	case "status":
		if hasFlag(os.Args, "watch", "w") {
			memlimit.StartLazy()
		}
	}
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

// command is the subcommand of args (swanmgr's one global flag, --version,
// takes no value).
func command(args []string) string {
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// hasFlag says whether args set the boolean flag with one of names
// (-name, --name, --name=true).
func hasFlag(args []string, names ...string) bool {
	for _, a := range args[1:] {
		if a == "--" {
			return false
		}
		f, ok := strings.CutPrefix(a, "-")
		if !ok {
			continue
		}
		f = strings.TrimPrefix(f, "-")
		f, val, hasVal := strings.Cut(f, "=")
		on, err := strconv.ParseBool(val)
		for _, n := range names {
			if f == n && (!hasVal || err == nil && on) {
				return true
			}
		}
	}
	return false
}
