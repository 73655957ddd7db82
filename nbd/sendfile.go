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

// sendFileReply answers a large read whose bytes the backend maps to an
// unchanging file by letting the kernel send them straight from the page
// cache: no buffer, no copy in the server, which profiling showed was 95%
// of its CPU time on sequential reads. It runs in the request loop, as the
// socket serialises replies anyway and a hand-over to a worker would cost
// more than the reply itself. It reports false, having sent nothing, when
// the read must go the ordinary way.
func (c *conn) sendFileReply(req rawRequest) bool {
	x := c.exp
	if c.rawSock == nil || x.filer == nil || req.Length < sendfileMin {
		return false
	}
	f, foff, ok := x.filer.FileRange(int64(req.Offset), int64(req.Length))
	if !ok {
		return false
	}
	var h [replyHeadroom]byte
	hdr := x.readReplyHeader(&h, req.Handle, req.Offset, int(req.Length))
	c.wmu.Lock()
	err := c.sendHeaderAndFile(hdr, f, foff, int64(req.Length))
	c.wmu.Unlock()
	if err != nil {
		// The header may be out already: the reply can no longer become an
		// error, and a short one would shift every later reply.
		c.broken()
	}
	return true
}

// sendHeaderAndFile writes hdr and then n bytes of f from off on the raw
// socket; the caller holds wmu.
func (c *conn) sendHeaderAndFile(hdr []byte, f *os.File, off, n int64) error {
	in := int(f.Fd())
	var opErr error
	err := c.rawSock.Write(func(fd uintptr) bool {
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
	})
	return errors.Join(err, opErr)
}
