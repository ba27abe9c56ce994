package vici

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// Event is one event charon raised: ike-updown, child-updown, ike-rekey,
// child-rekey, ike-update or log.
type Event struct {
	Name    string
	Time    time.Time       // when it was received
	Message *govici.Message // charon's message, unchanged
}

// Up reports an ike-updown or child-updown event for an SA coming up
// (charon sets "up = yes"; a down event has no "up").
func (e Event) Up() bool {
	v, _ := e.Message.Get("up").(string)
	return v == "yes"
}

// IKESAs parses the IKE_SA sections of an ike-updown, child-updown or
// ike-update event (for ike-update: with the old addresses). A child-updown
// carries only the affected CHILD_SA; ike-updown none.
func (e Event) IKESAs() ([]IKESA, error) {
	sas, err := parseIKESAs(e.Message)
	if err != nil {
		return nil, fmt.Errorf("%s event: %w", e.Name, err)
	}
	return sas, nil
}

// LogLine reads a log (or control-log) event.
func (e Event) LogLine() LogLine { return parseLogLine(e.Message) }

// watchBuffer is govici's channel buffer for Watch; a pump empties it
// continuously into an unbounded queue.
const watchBuffer = 1 << 12

// Watch subscribes to charon's events on a session of its own and delivers
// them, in order, on the returned channel. The channel closes when ctx ends,
// when the Client is closed, or when the daemon goes away (stops or
// restarts): that is the signal to Watch again. Events wait in memory while
// the reader is slow, so read the channel until it closes or end ctx.
// The one loss left is govici's: it drops an event when its channel
// (watchBuffer events) is full, which takes a burst of that many events
// arriving while the pump that empties it cannot run.
//
// A subscription charon does not confirm within the subscribe timeout
// fails with ErrSubscribeHung (see WithSubscribeTimeout). Event names
// charon does not know make Watch fail. Streamed events
// (list-sa, list-conn, control-log) only go to the session that runs the
// listing or initiate, never to a watcher.
func (c *Client) Watch(ctx context.Context, events ...string) (<-chan Event, error) {
	if len(events) == 0 {
		return nil, errors.New("watch: name at least one event")
	}
	prefix := "watch " + strings.Join(events, ", ")
	sctx, cancel, _ := c.withDeadline(ctx)
	s, ch, err := c.openDedicated(sctx, watchBuffer, events...)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", prefix, ctx.Err())
		}
		if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrClosed) || errors.Is(err, ErrSubscribeHung) {
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		// govici's sentinel for EVENT_UNKNOWN is unexported.
		if msg, ok := strings.CutPrefix(err.Error(), "vici: unknown event type"); ok {
			return nil, &CommandError{Command: "watch", Message: "unknown event type" + msg, Err: ErrUnsupported}
		}
		return nil, &disconnectedError{prefix: prefix, socket: c.socket, cause: err}
	}
	// End the session when ctx ends; govici then closes ch and the pump
	// closes out.
	stop := context.AfterFunc(ctx, func() { c.release(s) })
	out := make(chan Event)
	go func() {
		defer close(out)
		defer stop()
		defer c.release(s)
		for ev := range pump(ctx, ch) {
			select {
			case out <- Event{Name: ev.Name, Time: ev.Timestamp, Message: ev.Message}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
