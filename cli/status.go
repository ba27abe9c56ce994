package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/status"
	"github.com/swanmgr/swanmgr/vici"
)

var (
	outputFlag = &ucli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Value:   "table",
		Usage:   "table (aligned text) or json (docs/status-json.md)",
	}
	statusTimeoutFlag = &ucli.DurationFlag{
		Name:  "timeout",
		Value: 30 * time.Second,
		Usage: "give up on charon's answers after this long (each refresh with --watch)",
	}
)

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show charon's SAs named by the rules of the assigned policy, the IKE SAs and IPSecMon's statistics",
		Description: "One row per CHILD_SA with IPSecMon's columns (policy, rule and filter list, source and\n" +
			"destination address and port, protocol, tunnel endpoint, security), plus state, traffic and\n" +
			"times; every filter of the assigned policy without an SA shows as \"not established\" (or\n" +
			"\"negotiating\"), connections swanmgr did not load as \"not managed\". A figure charon does\n" +
			"not report reads n/a. --watch redraws at every --interval and at once when an SA comes up,\n" +
			"goes down or is rekeyed, and reconnects when charon restarts; while the guard counts no\n" +
			"IPsec traffic it moves the last view on instead of listing every SA (at least every 30 s it\n" +
			"lists them). See docs/status.md.",
		ArgsUsage: " ",
		Flags: []ucli.Flag{socketFlag, stateDirFlag, outputFlag,
			&ucli.StringFlag{Name: "rule", Usage: "only the rows of this rule of the assigned policy"},
			&ucli.StringFlag{Name: "peer", Usage: "only SAs with this peer (address or identity)"},
			&ucli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "keep showing: redraw on a terminal, append snapshots (one JSON object per line with -o json) otherwise"},
			&ucli.DurationFlag{Name: "interval", Value: time.Second, Usage: "with --watch: refresh at least this often"},
			statusTimeoutFlag,
		},
		Action: runStatus,
	}
}

// statusOutput is where and how a view is written.
type statusOutput struct {
	w        io.Writer
	fd       int // of a terminal
	json     bool
	terminal bool
	table    status.TableOptions
	shown    int
}

func newStatusOutput(c *ucli.Context) (*statusOutput, error) {
	o := &statusOutput{w: c.App.Writer}
	switch c.String(outputFlag.Name) {
	case "table":
	case "json":
		o.json = true
	default:
		return nil, usageErrorf("--output %q: use table or json", c.String(outputFlag.Name))
	}
	o.table.Width = status.DefaultWidth
	if f, ok := c.App.Writer.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			o.terminal, o.fd = true, int(f.Fd())
			o.table.Width, _ = o.size()
			o.table.Color = os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
		}
	}
	return o, nil
}

// size is the terminal's width (at most status.DefaultWidth) and height
// (0: unknown).
func (o *statusOutput) size() (width, height int) {
	ws, err := unix.IoctlGetWinsize(o.fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return status.DefaultWidth, 0
	}
	return min(int(ws.Col), status.DefaultWidth), int(ws.Row)
}

// show writes one view. Watching, a terminal is redrawn in place (cut to
// its height, as watch(1) does); other outputs get the views one after
// another.
func (o *statusOutput) show(st *status.Status, watching bool) error {
	var b bytes.Buffer
	if o.json {
		if err := status.WriteJSON(&b, st, watching); err != nil {
			return err
		}
		_, err := o.w.Write(b.Bytes())
		return err
	}
	height := 0
	if watching && o.terminal {
		// Follow the terminal when it is resized.
		o.table.Width, height = o.size()
	}
	if err := status.WriteTable(&b, st, o.table); err != nil {
		return err
	}
	var out bytes.Buffer
	switch {
	case watching && o.terminal:
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if height > 1 && len(lines) > height-1 {
			more := len(lines) - (height - 2)
			lines = append(lines[:height-2], fmt.Sprintf("… %d more lines: narrow the view with --rule or --peer, or use a taller terminal", more))
		}
		// Home, each line cleared to its end, then everything below.
		if o.shown == 0 {
			out.WriteString("\x1b[H\x1b[2J")
		}
		out.WriteString("\x1b[H")
		for _, line := range lines {
			out.WriteString(line + "\x1b[K\n")
		}
		out.WriteString("\x1b[J")
	case watching:
		if o.shown > 0 {
			out.WriteString("\n")
		}
		fmt.Fprintf(&out, "=== %s ===\n", st.Time.UTC().Format(time.RFC3339Nano))
		out.Write(b.Bytes())
	default:
		out.Write(b.Bytes())
	}
	o.shown++
	_, err := o.w.Write(out.Bytes())
	return err
}

func runStatus(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("status takes no arguments")
	}
	out, err := newStatusOutput(c)
	if err != nil {
		return err
	}
	sock, err := socketPath(c)
	if err != nil {
		return err
	}
	filter := status.Filter{Rule: c.String("rule"), Peer: c.String("peer")}
	records := &status.RecordReader{Store: assign.Store{Dir: c.String(stateDirFlag.Name)}, Socket: sock}
	guards := newGuardReader(records.Store, sock, c.App.Metadata)
	timeout := c.Duration(statusTimeoutFlag.Name)
	build := func(in status.Input) (*status.Status, error) {
		st, err := status.Build(in, filter)
		if errors.Is(err, status.ErrUnknownRule) {
			return nil, usageErrorf("%v", err)
		}
		return st, err
	}

	if c.Bool("watch") {
		interval := c.Duration("interval")
		if interval <= 0 {
			return usageErrorf("--interval must be positive")
		}
		// An unknown --rule is a usage error before anything is shown.
		if rec, err := records.Record(); err != nil {
			return err
		} else if _, err := build(status.Input{Time: time.Now(), Socket: sock, Record: rec}); err != nil {
			return err
		}
		err := status.Watch(c.Context, status.WatchOptions{
			Socket:   sock,
			Interval: interval,
			Timeout:  timeout,
			Filter:   filter,
			Dial: func(ctx context.Context) (status.Watchable, error) {
				return vici.Dial(ctx, sock)
			},
			Records: records,
			Guard:   guards,
			Emit:    func(st *status.Status) error { return out.show(st, true) },
		})
		if errors.Is(err, status.ErrUnknownRule) {
			return usageErrorf("%v", err)
		}
		return err
	}

	// One view and exit: garbage collection would only slow it down (a
	// view of 1,000 SAs allocates some 40 MB); the memory limit brings it
	// back for very large views. Both are restored for a caller that
	// runs swanmgr in-process (tests).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(256 << 20))
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	var in status.Input
	client, err := vici.Dial(ctx, sock)
	if err != nil {
		in = status.Unreachable(ctx, records, status.CollectOptions{Guard: guards}, err)
	} else {
		defer client.Close()
		in = status.Collect(ctx, client, records, status.CollectOptions{Guard: guards})
	}
	in.Socket = sock
	st, err := build(in)
	if err != nil {
		return err
	}
	if err := out.show(st, false); err != nil {
		return err
	}
	if !st.Daemon.Reachable {
		// The view says why; the exit code tells scripts.
		return &exitError{code: ExitFailure}
	}
	return nil
}
