package nbd

import (
	"encoding/binary"
	"io"
	"os"
)

// verdict is validateRequest's decision about one request.
type verdict int

const (
	verdictServe  verdict = iota // dispatch it
	verdictReject                // reply with the errno, skip any payload
	verdictClose                 // the stream cannot be trusted; close
)

func decodeRequest(b []byte) rawRequest {
	return rawRequest{
		Magic:  binary.BigEndian.Uint32(b[0:]),
		Flags:  binary.BigEndian.Uint16(b[4:]),
		Type:   Cmd(binary.BigEndian.Uint16(b[6:])),
		Handle: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}
}

// validateRequest is the single gate every request passes before dispatch:
// after it, handlers may trust magic, command, flags, permissions, range and
// length.
func validateRequest(x *export, req *rawRequest) (verdict, uint32) {
	if req.Magic != requestMagic {
		return verdictClose, 0
	}
	hasPayload := req.Type == CmdWrite
	reject := func(errno uint32) (verdict, uint32) {
		if hasPayload && req.Length > maxDrainLen {
			return verdictClose, errno
		}
		return verdictReject, errno
	}
	allowed := uint16(0)
	if x.flusher != nil {
		allowed |= cmdFlagFUA
	}
	switch req.Type {
	case CmdRead, CmdCache, CmdFlush, CmdDisc:
		if req.Type == CmdRead && x.structured {
			allowed |= cmdFlagDF
		}
	case CmdBlockStatus:
		// Only with base:allocation selected for this export (spec), and
		// a zero-length query has no answer of nonzero descriptors.
		if !x.blockStatus || req.Length == 0 {
			return reject(errnoInval)
		}
		allowed |= cmdFlagReqOne
	case CmdWrite, CmdTrim:
		if x.writer == nil {
			return reject(errnoPerm)
		}
		if req.Type == CmdTrim && x.trimmer == nil {
			return reject(errnoInval)
		}
	case CmdWriteZeroes:
		if x.writer == nil {
			return reject(errnoPerm)
		}
		allowed |= cmdFlagNoHole
	default:
		return reject(errnoInval)
	}
	if req.Flags&^allowed != 0 {
		return reject(errnoInval)
	}
	if req.Type == CmdFlush || req.Type == CmdDisc {
		return verdictServe, 0
	}
	if (req.Type == CmdRead || req.Type == CmdWrite) && req.Length > MaxBlockSize {
		return reject(errnoInval)
	}
	size := uint64(x.size)
	if req.Offset > size || uint64(req.Length) > size-req.Offset {
		return reject(errnoInval)
	}
	return verdictServe, 0
}

// transmit runs the transmission phase until DISC, a protocol violation, an
// I/O error or stop; in-flight requests are answered before it returns.
func (c *conn) transmit(x *export) {
	c.exp = x
	c.budget.init(c.srv.limits.ConnMemory)
	c.slots = make(chan struct{}, maxInFlight)
	c.jobs = make(chan job)
	defer c.workers.Wait()
	defer close(c.jobs)
	defer c.flushHeld()
	var hdr [requestLen]byte
	for !c.brokeErr.Load() {
		if c.held > 0 && c.r.Buffered() < requestLen {
			// About to wait for the client: first send what was answered.
			c.flushHeld()
		}
		if err := c.readHeader(hdr[:]); err != nil {
			return
		}
		req := decodeRequest(hdr[:])
		v, errno := validateRequest(x, &req)
		switch v {
		case verdictClose:
			return
		case verdictReject:
			if req.Type == CmdWrite {
				if err := c.skipPayload(int64(req.Length)); err != nil {
					return
				}
			}
			if c.acquire(replyCost) {
				c.reply(&req, errno, replyCost)
			} else {
				c.reply(&req, errno, 0)
				c.sendNow()
			}
			continue
		}
		if req.Type == CmdDisc {
			return
		}
		c.dispatch(req)
	}
}

// dispatch charges a request to the memory budgets, reads a write's
// payload (only the request loop may read the socket) and serves the
// request or hands it to a worker goroutine.
func (c *conn) dispatch(req rawRequest) {
	x := c.exp
	var f *os.File
	var foff int64
	inFile := false
	if req.Type == CmdRead && x.filer != nil {
		f, foff, inFile = x.filer.FileRange(int64(req.Offset), int64(req.Length))
		if inFile && c.sendFileFits(req) {
			// No buffer: the kernel takes the data from the page cache,
			// and a client that reads slowly holds up only this loop.
			c.sendFileReply(req, f, foff)
			return
		}
	}
	charge := c.cost(&req)
	if !c.acquire(charge) {
		c.serveDirect(req)
		return
	}
	if inFile && c.copyFromFile(req, f, foff, charge) {
		return
	}
	if req.Type == CmdWrite && c.quickWriteInPlace(req, charge) {
		return
	}
	var buf *[]byte
	if req.Type == CmdRead || req.Type == CmdWrite {
		buf = c.srv.pool.get(int(req.Length))
		if req.Type == CmdWrite {
			if err := c.readPayload((*buf)[replyHeadroom:]); err != nil {
				c.srv.pool.put(buf)
				c.release(charge)
				c.broken()
				return
			}
			if c.quickWrite(req, buf, charge) {
				return
			}
		}
	}
	c.serveCharged(req, buf, charge)
}

// serveCharged performs a charged request whose payload is in buf, in the request
// loop or on a worker.
func (c *conn) serveCharged(req rawRequest, buf *[]byte, charge int64) {
	// With nothing else in flight and no further request already received,
	// serving in the reader goroutine costs no goroutine start and no
	// cross-thread wake-up, which is most of the server's CPU overhead at
	// queue depth 1; a request arriving meanwhile waits at most for this one.
	if len(c.slots) == 0 && c.r.Buffered() == 0 {
		c.handle(req, buf, charge)
		return
	}
	c.slots <- struct{}{}
	j := job{req: req, buf: buf, charge: charge}
	// A long-lived worker that is idle takes the request; only when none is
	// (at most maxInFlight exist, bounded by slots) is another started, so a
	// steady queue depth costs no goroutine start per request.
	select {
	case c.jobs <- j:
	default:
		c.workers.Add(1)
		go c.work(j)
	}
}

// job is one validated request handed to a worker.
type job struct {
	req    rawRequest
	buf    *[]byte
	charge int64
}

// work serves j and then whatever the request loop hands over, until the
// loop closes jobs.
func (c *conn) work(j job) {
	defer c.workers.Done()
	for {
		c.handle(j.req, j.buf, j.charge)
		<-c.slots
		var ok bool
		if j, ok = <-c.jobs; !ok {
			return
		}
	}
}

// handle performs a validated request and queues its one reply, which
// carries charge back to the budgets once written. buf holds a READ's or
// WRITE's payload; it goes to the reply queue with a READ's data and back
// to the pool otherwise. A zero charge means the request is served
// directly (serveDirect), which may use the connection's direct buffer.
func (c *conn) handle(req rawRequest, buf *[]byte, charge int64) {
	x := c.exp
	off := int64(req.Offset)
	n := int64(req.Length)
	fua := req.Flags&cmdFlagFUA != 0
	var err error
	switch req.Type {
	case CmdRead:
		b := *buf
		err = readFullAt(x.Backend, b[replyHeadroom:], off)
		if err == nil {
			h := x.readReply(b, req.Handle, req.Offset)
			c.queue(&reply{buf: buf, start: len(b) - len(h), budget: charge})
			return
		}
	case CmdWrite:
		_, err = x.writer.WriteAt((*buf)[replyHeadroom:], off)
	case CmdTrim:
		err = x.trimmer.Trim(off, n)
	case CmdWriteZeroes:
		err = c.writeZeroes(off, n, charge == 0)
	case CmdFlush:
		if x.flusher != nil {
			err = x.flusher.Flush()
		}
	case CmdCache:
		// A hint only; the backends cache in the page cache already.
	case CmdBlockStatus:
		c.blockStatus(&req, charge)
		return
	}
	if buf != nil {
		// The payload is done with; only the reply is still charged.
		c.srv.pool.put(buf)
		c.release(charge - replyCost)
		charge = replyCost
	}
	if err == nil && fua {
		err = x.flusher.Flush()
	}
	c.reply(&req, errnoFor(err), charge)
}

// readFullAt fills p from r at off; io.EOF alongside a full read is
// allowed by io.ReaderAt, a short read is an error.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	got, err := r.ReadAt(p, off)
	if got == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// writeZeroes emulates WRITE_ZEROES with zero-filled writes when the
// backend is no Zeroer, through the direct buffer when direct is set.
func (c *conn) writeZeroes(off, n int64, direct bool) error {
	x := c.exp
	if x.zeroer != nil {
		return x.zeroer.Zero(off, n)
	}
	var z []byte
	if direct {
		z = c.directBuf()[replyHeadroom:]
	} else {
		buf := c.srv.pool.get(int(min(n, zeroChunk)))
		defer c.srv.pool.put(buf)
		z = (*buf)[replyHeadroom:]
	}
	clear(z)
	chunk := int64(len(z))
	for n > 0 {
		m := min(n, chunk)
		if _, err := x.writer.WriteAt(z[:m], off); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return nil
}

func putReplyHeader(b []byte, handle uint64, errno uint32) {
	binary.BigEndian.PutUint32(b[0:], simpleRepMagic)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], handle)
}

func (c *conn) simpleReply(handle uint64, errno uint32, charge int64) {
	r := reply{smallN: simpleReplyLen, budget: charge}
	putReplyHeader(r.small[:], handle, errno)
	c.queue(&r)
}
