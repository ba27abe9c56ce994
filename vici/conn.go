package vici

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// ErrNotVICI is matched (errors.Is) by the error of a command whose socket
// answered with something that is not VICI: a packet longer than charon
// ever sends, or an empty one.
var ErrNotVICI = errors.New("not a charon VICI socket")

// badLengthError is what boundedConn's Read returns once the peer has sent
// a packet length no charon sends; govici's reader stops on it and wraps
// it (%w) into the error of the command waiting for an answer.
type badLengthError struct{ length uint32 }

func (e *badLengthError) Error() string {
	return fmt.Sprintf("the peer announced a %d-byte packet; charon sends at most %d", e.length, maxPacket)
}

// notVICIError names the socket that is not charon's.
type notVICIError struct {
	prefix string
	socket string
	cause  *badLengthError
}

func (e *notVICIError) Error() string {
	return fmt.Sprintf("%s: %s is not a charon VICI socket (%v)", e.prefix, e.socket, e.cause)
}

func (e *notVICIError) Unwrap() error { return ErrNotVICI }

// asNotVICI returns the error for a command whose session read a packet no
// charon sends, or nil if err is not that.
func asNotVICI(prefix, socket string, err error) error {
	var bl *badLengthError
	if errors.As(err, &bl) {
		return &notVICIError{prefix: prefix, socket: socket, cause: bl}
	}
	return nil
}

// withBadLength adds to err the refused length of the session's
// connection, if there was one and err does not carry it already.
func withBadLength(bc *boundedConn, err error) error {
	if bc == nil || err == nil {
		return err
	}
	b := bc.bad.Load()
	var bl *badLengthError
	if b == nil || errors.As(err, &bl) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, b)
}

// boundedConn checks the length prefix of every packet read from charon
// before handing it to govici, which allocates whatever the prefix says
// (a socket that is not charon could make it allocate 4 GiB). libvici,
// which swanctl uses, refuses packets over charon's limit too (EBADMSG).
//
// govici reads a packet as io.ReadFull of the 4-byte length, then
// io.ReadFull of that many bytes. boundedConn reads each length itself,
// checks it, and only then lets govici see it. Only govici's reader
// goroutine calls Read.
type boundedConn struct {
	net.Conn
	max int // largest packet accepted

	hdr    [4]byte
	hdrN   int    // bytes of hdr read from the peer
	hdrOut int    // bytes of hdr handed to the caller
	left   uint32 // bytes of the current packet's body still to pass through
	// bad is set once a length is refused; read by the goroutine whose
	// command failed, which may see govici's "closed pipe" instead of
	// the reader's error (govici races the two).
	bad atomic.Pointer[badLengthError]
}

func newBoundedConn(c net.Conn, max int) *boundedConn { return &boundedConn{Conn: c, max: max} }

func (c *boundedConn) Read(p []byte) (int, error) {
	if b := c.bad.Load(); b != nil {
		return 0, b
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.hdrOut == len(c.hdr) && c.left == 0 {
		c.hdrN, c.hdrOut = 0, 0 // the previous packet is through
	}
	if c.hdrN < len(c.hdr) {
		for c.hdrN < len(c.hdr) {
			n, err := c.Conn.Read(c.hdr[c.hdrN:])
			c.hdrN += n
			if err != nil && c.hdrN < len(c.hdr) {
				return 0, err // a deadline: the next Read goes on
			}
		}
		l := binary.BigEndian.Uint32(c.hdr[:])
		if l == 0 || int64(l) > int64(c.max) {
			b := &badLengthError{length: l}
			c.bad.Store(b)
			return 0, b
		}
		c.left = l
	}
	if c.hdrOut < len(c.hdr) {
		n := copy(p, c.hdr[c.hdrOut:])
		c.hdrOut += n
		return n, nil
	}
	if uint32(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= uint32(n)
	return n, err
}
