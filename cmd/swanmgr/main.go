// Command swanmgr manages strongSwan's IPsec policy the way Windows IPsec
// did: an assigned policy of rules, each linking a filter list to a filter
// action. See the README and docs/ for the policy file and the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/swanmgr/swanmgr/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
