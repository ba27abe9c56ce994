package vici

import (
	"context"
	"errors"
	"strconv"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// LogLine is one control-log event: a line of charon's log about a running
// initiate or terminate (or one log event, see Event.LogLine).
type LogLine struct {
	Group   string // subsystem: IKE, CFG, NET, ENC, KNL, ...
	Level   int    // 0 (basic) to 4 (most verbose)
	IKEName string // the IKE_SA's config name, if the line is about one
	IKEID   uint64 // the IKE_SA's unique id, if the line is about one
	Message string
}

// String formats the line as swanctl --initiate prints it: "[IKE] message".
func (l LogLine) String() string { return "[" + l.Group + "] " + l.Message }

func parseLogLine(m *govici.Message) LogLine {
	str := func(k string) string { s, _ := m.Get(k).(string); return s }
	l := LogLine{Group: str("group"), IKEName: str("ikesa-name"), Message: str("msg")}
	// Log lines are for people: a malformed number is not worth an error.
	l.Level, _ = strconv.Atoi(str("level"))
	l.IKEID, _ = strconv.ParseUint(str("ikesa-uniqueid"), 10, 64)
	return l
}

// DefaultControlTimeout is how long Initiate and Terminate let charon work
// when the request's Timeout is zero.
const DefaultControlTimeout = 30 * time.Second

// controlMargin is how much longer than charon's own timeout we wait for its
// answer: charon answers at its timeout with a proper error ("... not
// established after Nms"), and our deadline must not cut that off.
const controlMargin = 5 * time.Second

// controlBuffer is the event buffer for control-log: a negotiation logs
// tens of lines at level 1.
const controlBuffer = 1 << 12

// controlDeadline picks charon's timeout and our context deadline for an
// initiate or terminate. With a context deadline, charon's timeout ends
// early enough before it for charon's answer to arrive; without one, the
// context gets a deadline some time after charon's timeout.
func controlDeadline(ctx context.Context, want time.Duration) (context.Context, context.CancelFunc, time.Duration, time.Duration) {
	if want <= 0 {
		want = DefaultControlTimeout
	}
	if d, ok := ctx.Deadline(); ok {
		remaining := time.Until(d)
		margin := min(controlMargin, remaining/5)
		want = max(min(want, remaining-margin), time.Millisecond)
		return ctx, func() {}, want, 0
	}
	ctx, cancel := context.WithTimeout(ctx, want+controlMargin)
	return ctx, cancel, want, want + controlMargin
}

func millis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// InitiateRequest names what to initiate: a CHILD_SA config (Child, with IKE
// to pick among equal names) or, with Child empty, an IKE_SA only.
type InitiateRequest struct {
	IKE   string
	Child string
	// Timeout is how long charon tries before it answers with a failure;
	// zero means DefaultControlTimeout. It is shortened to fit the context's
	// deadline. charon keeps trying in the background after its timeout.
	Timeout time.Duration
}

// Initiate asks charon to establish an SA and waits for the outcome. While
// charon works, every control-log line goes to log (which may be nil), in
// order, from one goroutine; all calls to log return before Initiate does.
//
// When charon reports a failure, the error is a *NegotiationError saying
// why in the operator's terms (the peer's filters do not mirror ours,
// authentication failed, no common proposal, no answer from the peer), as
// far as the log lines tell; it wraps charon's *CommandError.
func (c *Client) Initiate(ctx context.Context, r InitiateRequest, log func(LogLine)) error {
	name := r.Child
	if name == "" {
		name = r.IKE
	}
	if name == "" {
		return errors.New("initiate: need an IKE or CHILD_SA config name")
	}
	ctx, cancel, timeout, added := controlDeadline(ctx, r.Timeout)
	defer cancel()
	req := govici.NewMessage()
	set(req, "child", r.Child)
	set(req, "ike", r.IKE)
	set(req, "timeout", millis(timeout))

	var lines []LogLine
	_, err := c.stream(ctx, "initiate", name, "control-log", req, controlBuffer, added, func(m *govici.Message) {
		l := parseLogLine(m)
		lines = append(lines, l)
		if log != nil {
			log(l)
		}
	})
	var ce *CommandError
	if errors.As(err, &ce) && ce.Err == nil {
		return classify(name, ce, lines)
	}
	return err
}

// TerminateRequest selects the SAs to terminate; at least one selector is
// needed.
type TerminateRequest struct {
	IKE     string // IKE_SA config name
	Child   string // CHILD_SA config name
	IKEID   uint64 // IKE_SA unique id
	ChildID uint64 // CHILD_SA unique id
	// Force deletes an IKE_SA without waiting for the peer's answer to the
	// DELETE (waits up to Timeout for it).
	Force bool
	// Timeout is how long charon waits for the peer; zero means
	// DefaultControlTimeout, shortened to fit the context's deadline.
	Timeout time.Duration
}

// Terminate asks charon to terminate SAs, streaming its control-log lines to
// log (which may be nil) like Initiate. charon's refusal ("no matching SAs
// to terminate found", "terminating SA failed") is a *CommandError.
func (c *Client) Terminate(ctx context.Context, r TerminateRequest, log func(LogLine)) error {
	if r.IKE == "" && r.Child == "" && r.IKEID == 0 && r.ChildID == 0 {
		return errors.New("terminate: need an IKE or CHILD_SA name or id")
	}
	ctx, cancel, timeout, added := controlDeadline(ctx, r.Timeout)
	defer cancel()
	req := govici.NewMessage()
	setSelector(req, r.IKE, r.Child, r.IKEID, r.ChildID)
	if r.Force {
		set(req, "force", "yes")
	}
	set(req, "timeout", millis(timeout))
	_, err := c.stream(ctx, "terminate", selectorName(r.IKE, r.Child, r.IKEID, r.ChildID), "control-log", req, controlBuffer, added, func(m *govici.Message) {
		if log != nil {
			log(parseLogLine(m))
		}
	})
	return err
}
