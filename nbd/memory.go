package nbd

// cost is what req is charged until its reply has been written: the
// buffer its data or payload takes (a whole pool size class), or what its
// reply takes.
func (c *conn) cost(req *rawRequest) int64 {
	switch req.Type {
	case CmdRead, CmdWrite:
		return replyCost + bufSize(int(req.Length))
	case CmdBlockStatus:
		return replyCost + structReplyLen + blockStatusHdrLen + maxBlockDescs*blockDescLen
	case CmdWriteZeroes:
		if c.exp.zeroer == nil {
			return replyCost + bufSize(int(min(int64(req.Length), zeroChunk)))
		}
	}
	return replyCost
}

// acquire charges n bytes to the connection's budget and the server's. It
// waits while the connection's own budget is spent, having first sent what
// the request loop holds, so a client that does not read its replies is
// not read from either. It reports false, charging nothing, when the
// server's budget is spent or n is more than the connection may ever hold:
// the request is then served directly.
func (c *conn) acquire(n int64) bool {
	if n > c.budget.limit {
		return false
	}
	if !c.budget.tryAcquire(n) {
		c.flushHeld()
		c.budget.acquire(n)
	}
	if c.srv.mem.tryTake(n) {
		return true
	}
	c.budget.release(n)
	return false
}

// release gives back n bytes charged by acquire.
func (c *conn) release(n int64) {
	if n == 0 {
		return
	}
	c.srv.mem.give(n)
	c.budget.release(n)
}

// directBuf is the connection's own buffer for serveDirect, with headroom
// for a reply header.
func (c *conn) directBuf() []byte {
	if c.direct == nil {
		c.direct = make([]byte, replyHeadroom+DirectChunk)
	}
	return c.direct
}

// serveDirect serves a request for which the server's memory budget has no
// room: in the request loop, through the connection's direct buffer, and
// its reply is written before the loop reads on. A READ streams its data to
// the socket and a WRITE its payload to the backend a chunk at a time.
func (c *conn) serveDirect(req rawRequest) {
	switch req.Type {
	case CmdRead:
		c.streamRead(req)
		return
	case CmdWrite:
		if !c.streamWrite(req) {
			c.broken()
			return
		}
	default:
		c.handle(req, nil, 0)
	}
	c.sendNow()
}

// streamRead answers a READ a chunk at a time. The first chunk is read
// before the header is sent, so a failure there is an ordinary error
// reply; once the header is out, a failed read can no longer become one
// and a short reply would shift every later reply, so the connection is
// closed (as sendFileReply does).
func (c *conn) streamRead(req rawRequest) {
	x := c.exp
	buf := c.directBuf()
	data := buf[replyHeadroom:]
	off, n := int64(req.Offset), int64(req.Length)
	first := min(n, DirectChunk)
	if err := readFullAt(x.Backend, data[:first], off); err != nil {
		c.reply(&req, errnoFor(err), 0)
		c.sendNow()
		return
	}
	h := x.readReplyHeader((*[replyHeadroom]byte)(buf), req.Handle, req.Offset, int(n))
	c.held, c.heldBytes = 0, 0
	c.wmu.Lock()
	// Replies already queued go first, so this one cannot split a batch.
	c.writeQueued()
	err := c.writeBuffers([][]byte{buf[replyHeadroom-len(h) : replyHeadroom+first]})
	for pos := first; err == nil && pos < n; {
		m := min(n-pos, DirectChunk)
		if err = readFullAt(x.Backend, data[:m], off+pos); err == nil {
			err = c.writeBuffers([][]byte{data[:m]})
		}
		pos += m
	}
	c.wmu.Unlock()
	if err != nil {
		c.broken()
	}
	c.drainReplies()
}

// streamWrite performs a WRITE a chunk at a time as its payload arrives
// and queues its reply. A backend error stops the writing but not the
// reading of the payload, which the stream needs consumed. It reports
// false when the payload could not be read.
func (c *conn) streamWrite(req rawRequest) bool {
	x := c.exp
	b := c.directBuf()[replyHeadroom:]
	off, n := int64(req.Offset), int64(req.Length)
	var werr error
	for n > 0 {
		m := min(n, DirectChunk)
		if err := c.readPayload(b[:m]); err != nil {
			return false
		}
		if werr == nil {
			_, werr = x.writer.WriteAt(b[:m], off)
		}
		off += m
		n -= m
	}
	if werr == nil && req.Flags&cmdFlagFUA != 0 {
		werr = x.flusher.Flush()
	}
	c.reply(&req, errnoFor(werr), 0)
	return true
}

// sendNow writes everything queued, the request loop's own replies
// included, before the loop reads on.
func (c *conn) sendNow() {
	c.held, c.heldBytes = 0, 0
	c.wmu.Lock()
	c.writeQueued()
	c.wmu.Unlock()
	c.drainReplies()
}
