package status

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/swanmgr/swanmgr/assign"
	"github.com/swanmgr/swanmgr/vici"
)

// Watchable is a Daemon that also delivers events. *vici.Client has it.
type Watchable interface {
	Daemon
	// Watch delivers charon's events until ctx ends or charon goes away
	// (then the channel closes).
	Watch(ctx context.Context, events ...string) (<-chan vici.Event, error)
	Close() error
}

var _ Watchable = (*vici.Client)(nil)

// WatchOptions configure Watch.
type WatchOptions struct {
	Socket string
	// Interval between refreshes when nothing happens (IPSecMon's refresh
	// interval). Events refresh at once.
	Interval time.Duration
	// Timeout bounds each refresh (charon's answers).
	Timeout time.Duration
	Filter  Filter
	// Dial connects to charon; called again after it failed.
	Dial func(ctx context.Context) (Watchable, error)
	// Records give swanmgr's record for the socket, asked again at each
	// refresh so an apply during the watch shows (nil: none).
	Records Records
	// Emit shows a view; it runs on Watch's goroutine. An error ends Watch.
	Emit func(*Status) error
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Guard reads swanmgr's nftables guard (nil: not shown).
	Guard GuardReader
	// MaxBackoff caps the wait between reconnection attempts (default 2 s).
	MaxBackoff time.Duration
}

// minBackoff is the first wait before dialing charon again: a restart
// takes about 0.1 s.
const minBackoff = 50 * time.Millisecond

// Watch shows a view at once, then again at every tick of o.Interval and
// as soon as charon raises an event that changes SAs (ike-updown,
// child-updown, ike-rekey, child-rekey), on a session of its own; such a
// refresh asks for the IKE_SAs the events name where it can (refreshSAs).
// While charon is unreachable it shows "daemon unavailable" and dials
// again with a growing backoff; a restarted charon is picked up within the
// backoff.
// Between events it only waits: the ticker is its one timer.
//
// It returns when ctx ends (nil) or Emit fails. Build errors (an unknown
// --rule) end it too.
func Watch(ctx context.Context, o WatchOptions) error {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	w := &watcher{o: o, now: now, counts: &EventCounts{Since: now()}}
	if o.Guard != nil {
		w.gate = &gatedGuard{g: o.Guard, now: now}
		w.totals, _ = o.Guard.(TotalsReader)
	}
	defer func() {
		if w.client != nil {
			w.client.Close()
		}
	}()
	return w.run(ctx)
}

type watcher struct {
	o      WatchOptions
	now    func() time.Time
	counts *EventCounts
	client Watchable
	events <-chan vici.Event
	// subscribed is set once a Watch succeeded: a later one is a reconnect.
	subscribed bool
	// down: the last view showed charon unavailable, for lastErr.
	down    bool
	lastErr error
	// last is what the last view showed of a reachable charon, for
	// refreshSAs; nil after charon was unavailable or went away.
	last *Input

	// For refreshQuiet: the guard's totals (nil: none to read) and the
	// guard read through gate; seen are the totals read before the last
	// full listing (seenOK: they could be), listed its time.
	totals TotalsReader
	gate   *gatedGuard
	seen   Totals
	seenOK bool
	listed time.Time
	// view is what was built of last (its rows are reused).
	view *Status
}

// recordPoll is how often a watch whose interval is longer looks whether
// swanmgr's record changed (an apply, an unassign, a revert): one stat of
// the state folder. An apply whose SAs came up before it wrote its record
// showed its rules only at the next tick, an hour later with --interval 1h.
const recordPoll = time.Second

func (w *watcher) run(ctx context.Context) error {
	tick := time.NewTicker(w.o.Interval)
	defer tick.Stop()
	var recTick <-chan time.Time
	if w.o.Records != nil && w.o.Interval > recordPoll {
		t := time.NewTicker(recordPoll)
		defer t.Stop()
		recTick = t.C
	}
	backoff := time.Duration(0)
	var retry <-chan time.Time
	var retryTimer *time.Timer
	defer func() {
		if retryTimer != nil {
			retryTimer.Stop()
		}
	}()
	for {
		if w.events == nil && retry == nil {
			// Connect (or reconnect) and subscribe, then show a view.
			err := w.connect(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				if !w.down {
					if err := w.emitDown(err); err != nil {
						return err
					}
				}
				backoff = min(max(2*backoff, minBackoff), w.o.MaxBackoff)
				retryTimer = time.NewTimer(backoff)
				retry = retryTimer.C
			} else {
				backoff = 0
				if err := w.refresh(ctx); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-retry:
			retry, retryTimer = nil, nil
		case ev, ok := <-w.events:
			if !ok {
				// charon went away (stopped, restarted): reconnect right
				// away; connect fails and the view says so while it is down.
				w.events, w.last = nil, nil
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			var burst []vici.Event
			if w.counts.Count(ev) {
				burst = append(burst, ev)
			}
			// Take whatever else is queued, so a burst gives one refresh.
			for more := true; more; {
				select {
				case ev, ok := <-w.events:
					if !ok {
						w.events, w.last = nil, nil
						more = false
						break
					}
					if w.counts.Count(ev) {
						burst = append(burst, ev)
					}
				default:
					more = false
				}
			}
			if len(burst) > 0 {
				done, err := w.refreshSAs(ctx, burst)
				if err == nil && !done {
					err = w.refresh(ctx)
				}
				if err != nil {
					return err
				}
			}
		case <-recTick:
			if w.events == nil || w.last == nil {
				continue
			}
			if rec, err := w.o.Records.Record(); err == nil && sameAssignment(rec, w.last.Record) {
				continue
			}
			if err := w.refresh(ctx); err != nil {
				return err
			}
		case <-tick.C:
			if w.events == nil {
				// Unavailable: keep the view's clock going.
				if err := w.emitDown(w.lastErr); err != nil {
					return err
				}
				continue
			}
			done, err := w.refreshQuiet(ctx)
			if err == nil && !done {
				err = w.refresh(ctx)
			}
			if err != nil {
				return err
			}
		}
	}
}

// connect dials charon if needed and subscribes to its events.
func (w *watcher) connect(ctx context.Context) error {
	if w.client == nil {
		dctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
		c, err := w.o.Dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		w.client = c
	}
	ch, err := WatchEach(ctx, w.client, WatchedEvents...)
	if err != nil {
		if errors.Is(err, vici.ErrClosed) {
			w.client.Close()
			w.client = nil
		}
		return err
	}
	if w.subscribed {
		w.counts.Reconnects++
	}
	w.subscribed = true
	w.events = ch
	return nil
}

func (w *watcher) record() (*assign.Record, error) {
	if w.o.Records == nil {
		return nil, nil
	}
	return w.o.Records.Record()
}

// refresh asks charon for everything and shows it. The guard's totals
// are read first: traffic while charon answers moves them past what
// refreshQuiet compares with.
func (w *watcher) refresh(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	o := CollectOptions{Now: w.now}
	if w.gate != nil {
		o.Guard = w.gate
		w.seen, w.seenOK = Totals{}, false
		if w.totals != nil {
			t, err := w.totals.Totals(cctx)
			w.seen, w.seenOK = t, err == nil
		}
		w.gate.set(w.seen, w.seenOK)
	}
	in := Collect(cctx, w.client, w.o.Records, o)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	in.Socket, in.Events = w.o.Socket, w.counts.Copy()
	w.listed = in.Time
	return w.emit(&in)
}

// emit shows the view of in and keeps in for refreshSAs.
func (w *watcher) emit(in *Input) error {
	st, err := Build(*in, w.o.Filter)
	if err != nil {
		return err
	}
	w.down, w.lastErr = in.DaemonErr != nil, in.DaemonErr
	w.last, w.view = nil, nil
	in.reuse = nil
	if in.DaemonErr == nil {
		w.last, w.view = in, st
	}
	return w.o.Emit(st)
}

func (w *watcher) emitDown(cause error) error {
	if cause == nil {
		cause = errors.New("not connected")
	}
	rec, err := w.record()
	if err != nil {
		return err
	}
	in := Input{Time: w.now(), Socket: w.o.Socket, Record: rec, DaemonErr: cause}
	readConfirmations(w.o.Records, &in)
	gctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
	readGuard(gctx, w.o.Guard, &in) // it holds while charon is down
	cancel()
	st, err := Build(in, w.o.Filter)
	if err != nil {
		return err
	}
	w.down, w.lastErr, w.last = true, cause, nil
	return w.o.Emit(st)
}

// subscribeTimeout is how long a subscription may take (vici's default).
const subscribeTimeout = vici.DefaultSubscribeTimeout

// ErrSubscribeHung is matched by WatchEach's error when a subscription did
// not complete (see WatchEach); calling it again is the remedy. It is
// vici.ErrSubscribeHung.
var ErrSubscribeHung = vici.ErrSubscribeHung

// WatchEach subscribes to each event on a session of its own and merges
// them into one channel, which closes when ctx ends or any of the
// sessions ends (charon went away): then call it again. Events of one
// name keep their order; across names they may interleave.
//
// Why not one session for all: govici v0.8.1 holds a lock during
// Subscribe that its reader needs to deliver an event, so an event that
// arrives before its registration is confirmed blocks the session for
// good, and with several names the window spans all their registrations.
// One name per session keeps the window to one round trip; when it is hit
// anyway (charon raised that very event in between), the Watchable gives
// up on that session within its subscribe timeout (vici.Client: closes
// it and counts it, see vici.WithSubscribeTimeout) and WatchEach fails
// with ErrSubscribeHung instead of hanging. The Watchable's Watch must so
// return in bounded time.
func WatchEach(ctx context.Context, w Watchable, events ...string) (<-chan vici.Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	var chans []<-chan vici.Event
	for _, e := range events {
		ch, err := w.Watch(ctx, e)
		if err != nil {
			cancel()
			for _, c := range chans {
				for range c {
				}
			}
			return nil, err
		}
		chans = append(chans, ch)
	}
	out := make(chan vici.Event)
	var wg sync.WaitGroup
	for _, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel() // one ends: end them all, the caller reconnects
			for ev := range ch {
				select {
				case out <- ev:
				case <-ctx.Done():
					for range ch {
					}
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}
