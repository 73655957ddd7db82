package nbd

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Stall timeouts (Limits.PayloadTimeout, Limits.ReplyTimeout) are socket
// deadlines. Moving a deadline costs a timer update, so one is set for 1.5
// times the timeout T and moved only once less than T remains: a busy
// connection updates its timers a few times a minute, not once per request.
// A transfer that runs into the deadline having made progress since it was
// set is given another, so a stalled one is dropped at least T and at most
// 3T (1.5T of progress that stopped just before the deadline, then 1.5T
// more) after its last byte.

// deadlineSlack is how far past the timeout a deadline is set.
const deadlineSlack = 2 // the deadline is timeout + timeout/deadlineSlack

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// armRead makes sure a read deadline at least the payload timeout away is
// set; only the request loop calls it.
func (c *conn) armRead() {
	t := c.srv.limits.PayloadTimeout
	if t <= 0 {
		return
	}
	now := time.Now()
	if !c.readUntil.IsZero() && c.readUntil.Sub(now) >= t {
		return
	}
	c.readUntil = now.Add(t + t/deadlineSlack)
	c.dlmu.Lock()
	if !c.stopping.Load() {
		c.raw.SetReadDeadline(c.readUntil)
	}
	c.dlmu.Unlock()
}

// disarmRead removes the payload deadline, which must not time out a client
// that is merely idle between requests.
func (c *conn) disarmRead() {
	c.readUntil = time.Time{}
	c.dlmu.Lock()
	if !c.stopping.Load() {
		c.raw.SetReadDeadline(time.Time{})
	}
	c.dlmu.Unlock()
}

// armWrite is armRead for replies; the caller holds wmu.
func (c *conn) armWrite() {
	t := c.srv.limits.ReplyTimeout
	if t <= 0 {
		return
	}
	now := time.Now()
	if !c.writeUntil.IsZero() && c.writeUntil.Sub(now) >= t {
		return
	}
	c.writeUntil = now.Add(t + t/deadlineSlack)
	c.dlmu.Lock()
	if !c.stopping.Load() {
		c.raw.SetWriteDeadline(c.writeUntil)
	}
	c.dlmu.Unlock()
}

// again reports whether a transfer that stopped with err after moving
// progressed bytes should go on: it ran into its deadline but made progress
// since the deadline was set, and the connection is not shutting down. It
// forces the next arm call to set a fresh deadline.
func (c *conn) again(err error, progressed bool, until *time.Time) bool {
	if !isTimeout(err) || !progressed || c.stopping.Load() {
		return false
	}
	*until = time.Time{}
	return true
}

// readHeader reads a request header. A payload deadline still set from an
// earlier WRITE that expires while the client is idle is removed and the
// read goes on.
func (c *conn) readHeader(hdr []byte) error {
	n, err := io.ReadFull(c.r, hdr)
	for err != nil && isTimeout(err) && !c.readUntil.IsZero() && !c.stopping.Load() {
		c.disarmRead()
		var m int
		m, err = io.ReadFull(c.r, hdr[n:])
		n += m
	}
	return err
}

// readPayload reads a WRITE payload under the payload timeout.
func (c *conn) readPayload(p []byte) error {
	for {
		c.armRead()
		n, err := io.ReadFull(c.r, p)
		if err == nil {
			return nil
		}
		if !c.again(err, n > 0, &c.readUntil) {
			return err
		}
		p = p[n:]
	}
}

// peekPayload returns the next n payload bytes where the request reader
// holds them, under the payload timeout; n is at most the reader's size.
// They stay valid until the reader is next used.
func (c *conn) peekPayload(n int) ([]byte, error) {
	for {
		c.armRead()
		before := c.r.Buffered()
		p, err := c.r.Peek(n)
		if err == nil {
			return p, nil
		}
		if !c.again(err, c.r.Buffered() > before, &c.readUntil) {
			return nil, err
		}
	}
}

// skipPayload discards n payload bytes under the payload timeout.
func (c *conn) skipPayload(n int64) error {
	for n > 0 {
		c.armRead()
		m, err := c.r.Discard(int(min(n, 1<<20)))
		n -= int64(m)
		if err != nil && !c.again(err, m > 0, &c.readUntil) {
			return err
		}
	}
	return nil
}

// writeBuffers sends bufs whole under the reply timeout; the caller holds
// wmu. After TLS has run into a deadline its stream is unusable, so there
// a timeout is final.
func (c *conn) writeBuffers(bufs net.Buffers) error {
	for {
		c.armWrite()
		before := len(bufs)
		var first int
		if before > 0 {
			first = len(bufs[0])
		}
		_, err := bufs.WriteTo(c.nc)
		if err == nil {
			return nil
		}
		progressed := len(bufs) < before || (len(bufs) > 0 && len(bufs[0]) < first)
		if c.tls || !c.again(err, progressed, &c.writeUntil) {
			return err
		}
	}
}
