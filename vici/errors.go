package vici

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

var (
	// ErrUnreachable is matched (errors.Is) by every error saying that
	// charon's socket could not be connected to: it is missing, refuses
	// connections, or is not accessible.
	ErrUnreachable = errors.New("cannot reach charon")

	// ErrDisconnected is matched by errors of a command whose session broke
	// while it was being sent or answered (charon stopped or restarted). The
	// command may or may not have been carried out. The next command dials
	// a new session.
	ErrDisconnected = errors.New("connection to charon lost")

	// ErrUnsupported is matched by the error of a command this charon does
	// not offer: the command is unknown to it (CMD_UNKNOWN) or needs a
	// plugin that is not loaded (get-counters without the counters plugin).
	// It is errors.ErrUnsupported, so either name works.
	ErrUnsupported = errors.ErrUnsupported

	// ErrClosed is returned by commands on a closed Client.
	ErrClosed = errors.New("vici client closed")
)

// unreachableError is a failed dial.
type unreachableError struct {
	socket string
	cause  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach charon at %s: is it running? (%v)", e.socket, e.cause)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.cause} }

// dialCause strips the "dial unix PATH:" prefix net adds, which would repeat
// the socket path already in the message.
func dialCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// CommandError is charon refusing a command: it answered success = no.
// Message is charon's errmsg. It never holds secret data: charon's error
// messages for load-shared and load-key name the problem, not the key.
type CommandError struct {
	Command string // the VICI command, e.g. "load-conn"
	Name    string // what it was about (connection name, secret id), if any
	Message string // charon's errmsg

	// Err is a sentinel the error also matches, e.g. ErrUnsupported; nil
	// for an ordinary refusal.
	Err error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: charon: %s", cmdPrefix(e.Command, e.Name), e.Message)
}

func (e *CommandError) Unwrap() error { return e.Err }

func cmdPrefix(cmd, name string) string {
	if name == "" {
		return cmd
	}
	return fmt.Sprintf("%s %q", cmd, name)
}

// disconnectedError is a transport failure during a command.
type disconnectedError struct {
	prefix string
	socket string
	cause  error
}

func (e *disconnectedError) Error() string {
	return fmt.Sprintf("%s: connection to charon at %s lost (%v)", e.prefix, e.socket, e.cause)
}

func (e *disconnectedError) Unwrap() []error { return []error{ErrDisconnected, e.cause} }

// timeoutError is a command whose context ended before charon answered.
type timeoutError struct {
	prefix string
	socket string
	after  time.Duration // 0 when unknown
	cause  error         // the context's error
}

func (e *timeoutError) Error() string {
	switch {
	case errors.Is(e.cause, context.Canceled):
		return fmt.Sprintf("%s: interrupted while waiting for charon on %s (%v)", e.prefix, e.socket, e.cause)
	case e.after > 0:
		return fmt.Sprintf("%s: no answer from charon within %v on %s (%v)", e.prefix, e.after, e.socket, e.cause)
	case errors.Is(e.cause, context.DeadlineExceeded):
		return fmt.Sprintf("%s: charon did not answer on %s before the deadline (%v)", e.prefix, e.socket, e.cause)
	}
	return fmt.Sprintf("%s: %v", e.prefix, e.cause)
}

func (e *timeoutError) Unwrap() error { return e.cause }
