// Package nbdclient reads a disk exported by an NBD server (qemu-nbd,
// nbdkit, another kvmify), so anything those can read is a kvmify source.
//
// It is read-only and small: fixed newstyle negotiation with NBD_OPT_GO
// (falling back on NBD_OPT_EXPORT_NAME, and oldstyle servers), simple
// replies only, and pipelined READ requests from concurrent callers over
// one connection. A server's error reply is returned as an error naming
// the URI, offset and errno; a broken connection fails every request in
// flight and every later one.
package nbdclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Protocol constants, named as in the NBD protocol document.
const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	ihaveOpt          = 0x49484156454f5054 // "IHAVEOPT"
	oldstyleMagic     = 0x0000420281861253
	optReplyMagic     = 0x0003e889045565a9
	requestMagic      = 0x25609513
	simpleReplyMagic  = 0x67446698
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName = 1
	optGo         = 7

	repAck       = 1
	repInfo      = 3
	repErrUnsup  = 1<<31 + 1
	repFlagError = 1 << 31

	infoExport    = 0
	infoBlockSize = 3

	cmdRead = 0
	cmdDisc = 2

	defaultPort = "10809"
	// maxRequest bounds one READ: qemu-nbd refuses more than 32 MiB, and
	// smaller pieces of a large read travel in parallel anyway.
	maxRequest = 4 << 20
	// handshakeTimeout bounds negotiation with a server that never answers.
	handshakeTimeout = 30 * time.Second
	// maxOptReply bounds an option reply's payload we are willing to read.
	maxOptReply = 1 << 20
)

// ErrClosed is returned for reads after Close or after the connection
// broke (the error wraps the cause then).
var ErrClosed = errors.New("nbd connection closed")

// IsURI reports whether name is an NBD URI rather than a path.
func IsURI(name string) bool {
	for _, p := range []string{"nbd://", "nbd+unix://", "nbds://", "nbds+unix://"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Error is a server's error reply to a read.
type Error struct {
	URI    string
	Offset int64
	Length int
	Errno  uint32
}

var errnoNames = map[uint32]string{1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC", 75: "EOVERFLOW", 95: "ENOTSUP", 108: "ESHUTDOWN"}

func (e *Error) Error() string {
	name := errnoNames[e.Errno]
	if name == "" {
		name = "errno"
	}
	return fmt.Sprintf("%s: read of %d bytes at offset %d: server answered %s (%d)", e.URI, e.Length, e.Offset, name, e.Errno)
}

// Client is a read-only connection to one NBD export.
type Client struct {
	uri  string
	conn net.Conn
	size int64
	max  int // largest READ

	wmu sync.Mutex // one request written at a time

	mu      sync.Mutex
	pending map[uint64]*request
	handle  uint64
	err     error // set once the connection is unusable
	done    chan struct{}
}

type request struct {
	buf  []byte
	off  int64
	done chan error
}

// Dial connects to the export an NBD URI names: nbd://HOST[:PORT]/EXPORT or
// nbd+unix:///EXPORT?socket=PATH.
func Dial(uri string) (*Client, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("nbd URI %q: %w", uri, err)
	}
	var network, addr string
	switch u.Scheme {
	case "nbd":
		network, addr = "tcp", u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), defaultPort)
		}
	case "nbd+unix":
		network, addr = "unix", u.Query().Get("socket")
		if addr == "" {
			return nil, fmt.Errorf("nbd URI %q: nbd+unix needs ?socket=PATH", uri)
		}
	case "nbds", "nbds+unix":
		return nil, fmt.Errorf("nbd URI %q: TLS (nbds) is not supported as a source", uri)
	default:
		return nil, fmt.Errorf("nbd URI %q: scheme %q is not nbd or nbd+unix", uri, u.Scheme)
	}
	export := strings.TrimPrefix(u.Path, "/")
	conn, err := net.DialTimeout(network, addr, handshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", uri, err)
	}
	c := &Client{uri: uri, conn: conn, max: maxRequest, pending: map[uint64]*request{}, done: make(chan struct{})}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.negotiate(export); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: negotiation: %w", uri, err)
	}
	conn.SetDeadline(time.Time{})
	go c.receive()
	return c, nil
}

// negotiate runs the handshake up to transmission.
func (c *Client) negotiate(export string) error {
	var hdr [18]byte
	if _, err := io.ReadFull(c.conn, hdr[:16]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hdr[:8]) != nbdMagic {
		return fmt.Errorf("server greeting %q is not NBDMAGIC", hdr[:8])
	}
	switch binary.BigEndian.Uint64(hdr[8:16]) {
	case oldstyleMagic:
		var b [8 + 4 + 124]byte
		if _, err := io.ReadFull(c.conn, b[:]); err != nil {
			return err
		}
		c.size = int64(binary.BigEndian.Uint64(b[:8]))
		return c.checkSize()
	case ihaveOpt:
	default:
		return fmt.Errorf("unknown handshake magic %#x", binary.BigEndian.Uint64(hdr[8:16]))
	}
	if _, err := io.ReadFull(c.conn, hdr[16:18]); err != nil {
		return err
	}
	sflags := binary.BigEndian.Uint16(hdr[16:18])
	cflags := uint32(sflags & (flagFixedNewstyle | flagNoZeroes))
	if err := binary.Write(c.conn, binary.BigEndian, cflags); err != nil {
		return err
	}
	if sflags&flagFixedNewstyle != 0 {
		ok, err := c.optGo(export)
		if err != nil || ok {
			return err
		}
	}
	return c.optExportName(export, sflags&flagNoZeroes != 0)
}

// sendOption writes one option request.
func (c *Client) sendOption(opt uint32, data []byte) error {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b, ihaveOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	copy(b[16:], data)
	_, err := c.conn.Write(b)
	return err
}

// optGo asks for the export with NBD_OPT_GO; ok false means the server does
// not know the option and NBD_OPT_EXPORT_NAME should be tried.
func (c *Client) optGo(export string) (ok bool, err error) {
	data := make([]byte, 4+len(export)+2+2)
	binary.BigEndian.PutUint32(data, uint32(len(export)))
	copy(data[4:], export)
	binary.BigEndian.PutUint16(data[4+len(export):], 1)
	binary.BigEndian.PutUint16(data[6+len(export):], infoBlockSize)
	if err := c.sendOption(optGo, data); err != nil {
		return false, err
	}
	gotSize := false
	for {
		var h [20]byte
		if _, err := io.ReadFull(c.conn, h[:]); err != nil {
			return false, err
		}
		if binary.BigEndian.Uint64(h[:8]) != optReplyMagic {
			return false, fmt.Errorf("option reply magic %#x", binary.BigEndian.Uint64(h[:8]))
		}
		typ, n := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		if n > maxOptReply {
			return false, fmt.Errorf("option reply of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c.conn, payload); err != nil {
			return false, err
		}
		switch {
		case typ == repErrUnsup:
			return false, nil
		case typ&repFlagError != 0:
			return false, fmt.Errorf("export %q refused (reply %#x): %s", export, typ, payload)
		case typ == repAck:
			if !gotSize {
				return false, errors.New("server sent no export size")
			}
			return true, nil
		case typ == repInfo && len(payload) >= 2:
			switch binary.BigEndian.Uint16(payload) {
			case infoExport:
				if len(payload) < 12 {
					return false, fmt.Errorf("export info of %d bytes", len(payload))
				}
				c.size = int64(binary.BigEndian.Uint64(payload[2:]))
				if err := c.checkSize(); err != nil {
					return false, err
				}
				gotSize = true
			case infoBlockSize:
				if len(payload) >= 14 {
					if m := int(binary.BigEndian.Uint32(payload[10:])); m >= 512 && m < c.max {
						c.max = m
					}
				}
			}
		}
	}
}

// optExportName asks for the export the old way; the server answers with
// the size and flags, or closes the connection.
func (c *Client) optExportName(export string, noZeroes bool) error {
	if err := c.sendOption(optExportName, []byte(export)); err != nil {
		return err
	}
	n := 8 + 2 + 124
	if noZeroes {
		n = 10
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		return fmt.Errorf("export %q: %w", export, err)
	}
	c.size = int64(binary.BigEndian.Uint64(b))
	return c.checkSize()
}

func (c *Client) checkSize() error {
	if c.size < 0 {
		return fmt.Errorf("export size %d", uint64(c.size))
	}
	return nil
}

// receive reads replies and hands each to its request until the
// connection ends.
func (c *Client) receive() {
	defer close(c.done)
	var h [16]byte
	for {
		if _, err := io.ReadFull(c.conn, h[:]); err != nil {
			c.fail(err)
			return
		}
		if m := binary.BigEndian.Uint32(h[:4]); m != simpleReplyMagic {
			c.fail(fmt.Errorf("reply magic %#x is not a simple reply's", m))
			return
		}
		errno, handle := binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
		c.mu.Lock()
		r := c.pending[handle]
		delete(c.pending, handle)
		c.mu.Unlock()
		if r == nil {
			c.fail(fmt.Errorf("reply for unknown handle %d", handle))
			return
		}
		if errno != 0 {
			r.done <- &Error{URI: c.uri, Offset: r.off, Length: len(r.buf), Errno: errno}
			continue
		}
		if _, err := io.ReadFull(c.conn, r.buf); err != nil {
			r.done <- fmt.Errorf("%s: read at offset %d: %w", c.uri, r.off, err)
			c.fail(err)
			return
		}
		r.done <- nil
	}
}

// fail marks the connection broken and fails every request in flight.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = fmt.Errorf("%s: %w: %w", c.uri, ErrClosed, err)
	}
	for h, r := range c.pending {
		r.done <- c.err
		delete(c.pending, h)
	}
}

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// Format names the source kind.
func (c *Client) Format() string { return "nbd" }

// InputFiles is empty: an NBD export reads no local file through kvmify.
func (c *Client) InputFiles() []string { return nil }

// ReadAt reads the export, in pieces of at most the server's largest
// request, all in flight at once. A read ending past Size returns io.EOF
// with the bytes before it.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", c.uri, off)
	}
	want := len(p)
	if off >= c.size {
		return 0, io.EOF
	}
	if int64(want) > c.size-off {
		want = int(c.size - off)
	}
	var reqs []*request
	for n := 0; n < want; n += c.max {
		r := &request{buf: p[n:min(want, n+c.max)], off: off + int64(n), done: make(chan error, 1)}
		if err := c.send(r); err != nil {
			r.done <- err
		}
		reqs = append(reqs, r)
	}
	var first error
	done := 0
	for _, r := range reqs {
		if err := <-r.done; err != nil && first == nil {
			first = err
		} else if first == nil {
			done += len(r.buf)
		}
	}
	if first != nil {
		return done, first
	}
	if want < len(p) {
		return want, io.EOF
	}
	return want, nil
}

// send registers r and writes its READ request.
func (c *Client) send(r *request) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.handle++
	h := c.handle
	c.pending[h] = r
	c.mu.Unlock()
	var b [28]byte
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[6:], cmdRead)
	binary.BigEndian.PutUint64(b[8:], h)
	binary.BigEndian.PutUint64(b[16:], uint64(r.off))
	binary.BigEndian.PutUint32(b[24:], uint32(len(r.buf)))
	c.wmu.Lock()
	_, err := c.conn.Write(b[:])
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		_, still := c.pending[h]
		delete(c.pending, h)
		c.mu.Unlock()
		if !still {
			// fail already answered it.
			return nil
		}
		return fmt.Errorf("%s: sending a read at offset %d: %w", c.uri, r.off, err)
	}
	return nil
}

// Close tells the server goodbye and closes the connection.
func (c *Client) Close() error {
	var b [28]byte
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[6:], cmdDisc)
	c.wmu.Lock()
	c.conn.Write(b[:])
	c.wmu.Unlock()
	err := c.conn.Close()
	<-c.done
	return err
}
