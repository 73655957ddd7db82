package nbd

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sendfileMin is the smallest read answered with sendfile(2): below it the
// two system calls (header, then file) cost more than one copy of the data.
const sendfileMin = 64 << 10

// sendfileChunk bounds one sendfile call, which Linux caps near 2 GiB anyway.
const sendfileChunk = 1 << 30

// sendFileReply sends a successful read reply whose data the
// kernel takes from f at foff: no buffer, no copy in the server.
func (c *conn) sendFileReply(req rawRequest, f *os.File, foff int64) {
	var h [replyHeadroom]byte
	hdr := c.exp.readReplyHeader(&h, req.Handle, req.Offset, int(req.Length))
	c.wmu.Lock()
	// Replies already queued go first, so this one cannot split a batch.
	c.writeQueued()
	err := c.sendHeaderAndFile(hdr, f, foff, int64(req.Length))
	c.wmu.Unlock()
	if err != nil {
		// The header may be out already: the reply can no longer become an
		// error, and a short one would shift every later reply.
		c.broken()
	}
	// Replies queued while this one was going out were left to us.
	c.drainReplies()
}

// sendHeaderAndFile writes hdr and then n bytes of f from off on the raw
// socket; the caller holds wmu.
func (c *conn) sendHeaderAndFile(hdr []byte, f *os.File, off, n int64) error {
	rc, err := c.fileConn(f)
	if err != nil {
		return err
	}
	ferr := rc.Read(func(inFD uintptr) bool {
		err = c.sendHeaderAndFD(hdr, int(inFD), off, n)
		return true
	})
	return errors.Join(ferr, err)
}

// sendHeaderAndFD is sendHeaderAndFile with the file's descriptor held.
// It waits for the socket under the reply timeout.
func (c *conn) sendHeaderAndFD(hdr []byte, in int, off, n int64) error {
	var opErr error
	send := func(fd uintptr) bool {
		for len(hdr) > 0 {
			// MSG_MORE keeps TCP from sending the header in a packet of
			// its own ahead of the data.
			m, err := unix.SendmsgN(int(fd), hdr, nil, nil, unix.MSG_MORE)
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
				continue
			case err != nil:
				opErr = err
				return true
			}
			hdr = hdr[m:]
		}
		for n > 0 {
			m, err := unix.Sendfile(int(fd), in, &off, int(min(n, sendfileChunk)))
			if m > 0 {
				n -= int64(m)
			}
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
			case err != nil:
				opErr = err
				return true
			case m == 0:
				// The file ended early: it shrank under us.
				opErr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	}
	for {
		c.armWrite()
		left := int64(len(hdr)) + n
		err := c.rawSock.Write(send)
		if err == nil || opErr != nil || !c.again(err, int64(len(hdr))+n < left, &c.writeUntil) {
			return errors.Join(err, opErr)
		}
	}
}
