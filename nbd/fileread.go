package nbd

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxHeldReplies and maxHeldBytes bound the replies the request loop
// answers inline before it sends them.
const (
	maxHeldReplies = 64
	maxHeldBytes   = 1 << 20
)

// Reads that the backend maps to its unchanging file are served in the
// request loop, without a worker, when that cannot block: reads pipelined
// behind others go out with sendfile(2) (sendFileFits), which spares the
// server both copies (profiling showed them at 95% of its CPU on sequential
// reads); others are copied with preadv2(RWF_NOWAIT) (copyFromFile), which
// succeeds only when the page cache holds the data (on tmpfs, which refuses
// the flag but never waits for a device, with a plain read).
//
// A read that is alone on the connection is copied rather than sent with
// sendfile: the client waits for it, and data the server just copied is
// still in the cache when the client copies it out of the socket, whereas
// sendfile makes the client fetch it from memory (nbdcopy --synchronous
// ran 1.8× slower that way).

// sendFileFits reports whether a read of the backend's file goes out with
// sendfile.
func (c *conn) sendFileFits(req rawRequest) bool {
	return c.rawSock != nil && req.Length >= sendfileMin && (c.r.Buffered() >= requestLen || len(c.slots) > 0)
}

// copyFromFile copies a read of f at foff into a reply in the request loop
// when the data is cached. The reply carries charge. It reports false,
// having sent nothing, when the read must go the ordinary way.
func (c *conn) copyFromFile(req rawRequest, f *os.File, foff int64, charge int64) bool {
	x := c.exp
	if c.noNowait {
		return false
	}
	rc, err := c.fileConn(f)
	if err != nil {
		return false
	}
	n := int(req.Length)
	buf := c.srv.pool.get(n)
	b := *buf
	var got int
	// Through RawConn the descriptor stays referenced for the call, so a
	// backend closed meanwhile fails cleanly instead of naming a reused fd.
	rerr := rc.Read(func(fd uintptr) bool {
		flags := unix.RWF_NOWAIT
		if c.ramFile {
			flags = 0
		}
		got, err = unix.Preadv2(int(fd), [][]byte{b[replyHeadroom:]}, foff, flags)
		if err != nil && !c.ramFile && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
			// A file system without RWF_NOWAIT is not asked again; one that
			// lives in memory (tmpfs, ramfs) never waits for a device, so
			// its reads are always safe here.
			if c.ramFile = inMemoryFS(int(fd)); c.ramFile {
				got, err = unix.Preadv2(int(fd), [][]byte{b[replyHeadroom:]}, foff, 0)
			} else {
				c.noNowait = true
			}
		}
		return true
	})
	if rerr != nil || err != nil || got != n {
		// EAGAIN or a short read: the data is not all cached.
		c.srv.pool.put(buf)
		return false
	}
	h := x.readReply(b, req.Handle, req.Offset)
	c.answer(&reply{buf: buf, start: len(b) - len(h), budget: charge}, n)
	return true
}

// answer queues a reply made in the request loop, or holds it when the next
// request is already here, so that a burst of requests answered in the loop
// leaves in one writev.
func (c *conn) answer(r *reply, n int) {
	if c.r.Buffered() >= requestLen {
		c.hold(r, n)
	} else {
		c.queue(r)
	}
}

// hold queues a reply answered in the request loop without writing it; the
// loop sends held replies before it waits for the client again.
func (c *conn) hold(r *reply, n int) {
	q := &c.replies
	q.mu.Lock()
	q.pending = append(q.pending, *r)
	full := len(q.pending) >= maxHeldReplies
	q.mu.Unlock()
	c.held++
	c.heldBytes += n
	if full || c.heldBytes >= maxHeldBytes {
		c.flushHeld()
	}
}

// flushHeld sends the replies the request loop holds (or leaves them to a
// worker that is writing and will look at the queue again).
func (c *conn) flushHeld() {
	c.held, c.heldBytes = 0, 0
	c.drainReplies()
}

// fileConn gives f's RawConn, keeping the last one: a backend maps reads
// to one file or very few.
func (c *conn) fileConn(f *os.File) (syscall.RawConn, error) {
	if f != c.lastFile {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.lastFile, c.lastFileConn = f, rc
	}
	return c.lastFileConn, nil
}

// inMemoryFS reports whether fd's file lives in a file system whose page
// cache is its storage.
func inMemoryFS(fd int) bool {
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}
