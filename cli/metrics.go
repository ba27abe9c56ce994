package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/metrics"
	"github.com/swanmgr/swanmgr/status"
)

// DefaultMetricsListen is where metrics are served when --listen is not
// given: loopback only; expose it deliberately.
const DefaultMetricsListen = "127.0.0.1:9814"

func metricsCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "metrics",
		Usage: "serve charon's SAs, swanmgr's rules and IPSecMon's statistics as Prometheus metrics",
		Description: "Serves /metrics on --listen (loopback by default). Every scrape asks charon (within\n" +
			"--scrape-timeout): swanmgr_daemon_up, bytes and packets per rule and peer, swanmgr_rule_up\n" +
			"for every rule of the assigned policy, IPSecMon's statistics. Figures charon does not keep\n" +
			"are counted from its events while the exporter runs. Metric list: docs/status.md.",
		ArgsUsage: " ",
		Flags: []ucli.Flag{socketFlag, stateDirFlag,
			&ucli.StringFlag{Name: "listen", Value: DefaultMetricsListen, Usage: "address:port to serve on (port 0: any free port, printed)"},
			&ucli.DurationFlag{Name: "scrape-timeout", Value: 10 * time.Second, Usage: "give up on charon's answers for one scrape after this long"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("metrics takes no arguments")
			}
			sock, err := socketPath(c)
			if err != nil {
				return err
			}
			records := &status.RecordReader{Store: assign.Store{Dir: c.String(stateDirFlag.Name)}, Socket: sock}
			exp := metrics.New(metrics.Options{Socket: sock, Records: records, Timeout: c.Duration("scrape-timeout"),
				Guard: newGuardReader(records.Store, sock, c.App.Metadata)})
			defer exp.Close()

			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			mux := http.NewServeMux()
			mux.Handle("/metrics", metrics.Handler(exp))
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/" {
					http.NotFound(w, r)
					return
				}
				fmt.Fprintf(w, "swanmgr metrics of charon at %s: /metrics\n", sock)
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

			// Run's subscriptions end with ctx; the command returns only
			// after they have (deferred calls run last to first).
			ctx, cancel := context.WithCancel(c.Context)
			ran := make(chan struct{})
			go func() { exp.Run(ctx); close(ran) }()
			defer func() { <-ran }()
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			fmt.Fprintf(c.App.Writer, "serving metrics of charon at %s on http://%s/metrics\n", sock, ln.Addr())
			select {
			case err := <-errc:
				return fmt.Errorf("metrics: %w", err)
			case <-ctx.Done():
			}
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: %w", err)
			}
			return nil
		},
	}
}
