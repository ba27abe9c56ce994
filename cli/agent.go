package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/swanmgr/swanmgr/agent"
	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/metrics"
	"github.com/swanmgr/swanmgr/render"
	"github.com/swanmgr/swanmgr/status"
)

func agentCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "agent",
		Usage: "the policy agent: assign the policy and keep charon converged with it (a foreground service)",
		Description: "Validates -f FILE, waits for charon's socket (as long as it takes), assigns the policy,\n" +
			"and from then on keeps charon converged with it, the way Windows' IPSEC Policy Agent\n" +
			"kept an assigned policy enforced:\n" +
			"  - charon restarted: the whole policy is loaded again as soon as its socket answers;\n" +
			"  - swanmgr's connections or secrets unloaded or replaced (a stray `swanctl --load-all`):\n" +
			"    loaded again at the next check (--check-interval);\n" +
			"  - FILE (or a file of the folder -f names, or the list of them) or a key file it reads\n" +
			"    changed, or SIGHUP: read and validated again; a policy that does not validate is\n" +
			"    refused (file:line) and the last good policy stays;\n" +
			"  - rules that charon should keep up (libipsec: start action) and are down: initiated\n" +
			"    again with exponential backoff per rule, each failure logged with its reason;\n" +
			"  - a change made with apply --confirm pending: it holds off (repairing charon with the\n" +
			"    change being tried, not FILE); past the deadline with no watchdog left it reverts the\n" +
			"    change itself, and does not reassign a reverted file.\n" +
			"One line per event on stderr (journald adds the time; a terminal gets it in the line).\n" +
			"SIGTERM or SIGINT: exit 0, the assignment and the guard stay in place. One agent per\n" +
			"charon socket (a lock in --state-dir). Unit file and coexistence with strongswan.service:\n" +
			"docs/agent.md.",
		ArgsUsage: " ",
		Flags: []ucli.Flag{socketFlag, stateDirFlag, fileFlag, insecureFlag,
			&ucli.StringFlag{
				Name:    backendFlag.Name,
				Usage:   "charon's IPsec backend, kernel or libipsec; default: what charon runs (its kernel-libipsec plugin); one that contradicts charon is an error",
				EnvVars: backendFlag.EnvVars,
			},
			&ucli.DurationFlag{Name: "check-interval", Value: agent.DefaultCheckInterval, Usage: "how often to compare charon with the policy cheaply (get-conns, get-shared, the files' stat)"},
			&ucli.DurationFlag{Name: "full-check-interval", Value: agent.DefaultFullCheckInterval, Usage: "how often the check goes all the way (the record, every input file's content, the guard table) although the cheap one found nothing"},
			&ucli.DurationFlag{Name: "negotiation-timeout", Value: agent.DefaultNegotiationTimeout, Usage: "how long charon may try each re-initiate"},
			&ucli.DurationFlag{Name: "initiate-backoff", Value: agent.DefaultInitiateMin, Usage: "first wait before initiating a rule that should be up and is not; doubles per failure"},
			&ucli.DurationFlag{Name: "initiate-backoff-max", Value: agent.DefaultInitiateMax, Usage: "longest wait between initiates of a failing rule"},
			&ucli.StringFlag{Name: "metrics", Usage: "also serve the Prometheus exporter, as swanmgr metrics does, on `ADDR` (e.g. 127.0.0.1:9814; port 0: any free port, logged)"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("agent takes no arguments (use -f FILE)")
			}
			sock, err := socketPath(c)
			if err != nil {
				return err
			}
			var backend render.Backend
			if c.IsSet(backendFlag.Name) {
				if backend, err = render.ParseBackend(c.String(backendFlag.Name)); err != nil {
					return usageErrorf("%v", err)
				}
			}
			stateDir := c.String(stateDirFlag.Name)
			log := &eventLog{w: c.App.ErrWriter, stamp: os.Getenv("JOURNAL_STREAM") == ""}

			reload := make(chan struct{}, 1)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()

			a, err := agent.New(agent.Config{
				PolicyFile: c.String(fileFlag.Name), Backend: backend, Validate: validateOptions(c),
				Socket: sock, Store: assign.Store{Dir: stateDir}, Log: log, Reload: reload,
				CheckInterval:      c.Duration("check-interval"),
				FullCheckInterval:  c.Duration("full-check-interval"),
				NegotiationTimeout: c.Duration("negotiation-timeout"),
				InitiateMin:        c.Duration("initiate-backoff"),
				InitiateMax:        c.Duration("initiate-backoff-max"),
				Dial: func(ctx context.Context) (*agent.Conn, error) {
					return dialAgent(ctx, c, sock, stateDir)
				},
				Hold: agentHold(c, sock, assign.Store{Dir: stateDir}, c.String(fileFlag.Name), log),
				Held: agentHeld(sock, assign.Store{Dir: stateDir}, c.String(fileFlag.Name)),
			})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()
			errc := make(chan error, 2)
			if addr := c.String("metrics"); addr != "" {
				stop, err := serveMetrics(ctx, sock, stateDir, addr, log, errc)
				if err != nil {
					return err
				}
				defer stop()
			}
			go func() { errc <- a.Run(ctx) }()
			return <-errc
		},
	}
}

// dialAgent builds the agent's engine through newSession, the one place
// engines are built, and reads charon's backend.
func dialAgent(ctx context.Context, c *ucli.Context, sock, stateDir string) (*agent.Conn, error) {
	s, err := newSession(ctx, sock, stateDir, c.App.Metadata)
	if err != nil {
		return nil, err
	}
	backend, err := s.backend(ctx, c)
	if err != nil {
		s.Close()
		var ee *exitError
		if errors.As(err, &ee) {
			// A contradicting --ipsec-backend does not heal by waiting.
			return nil, agent.Fatal(err)
		}
		return nil, err
	}
	return &agent.Conn{Engine: s.engine, Client: s.client, Backend: backend}, nil
}

// serveMetrics serves the Prometheus exporter beside the agent until ctx
// ends; a failure to serve goes to errc.
func serveMetrics(ctx context.Context, sock, stateDir, addr string, log io.Writer, errc chan<- error) (func(), error) {
	records := &status.RecordReader{Store: assign.Store{Dir: stateDir}, Socket: sock}
	exp := metrics.New(metrics.Options{Socket: sock, Records: records, Timeout: 10 * time.Second,
		Guard: newGuardReader(records.Store, sock, nil)})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		exp.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(exp))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go exp.Run(ctx)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	fmt.Fprintf(log, "serving metrics of charon at %s on http://%s/metrics\n", sock, ln.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		exp.Close()
	}, nil
}

// eventLog writes the agent's lines, each with the time unless journald
// (which stamps lines itself) reads them.
type eventLog struct {
	mu    sync.Mutex
	w     io.Writer
	stamp bool
}

func (l *eventLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stamp {
		if _, err := fmt.Fprintf(l.w, "%s ", time.Now().UTC().Format("2006-01-02T15:04:05.000Z")); err != nil {
			return 0, err
		}
	}
	return l.w.Write(p)
}
