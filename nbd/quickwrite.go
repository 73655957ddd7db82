package nbd

// quickWrite performs a write in the request loop when the backend can do
// it without reading a lower layer, and gives back buf and its budget. At
// queue depth 32 writes handed to workers spent a third of the server's
// time switching between threads that contend for the overlay file's inode
// lock, which lets one writer in at a time anyway. Writes with FUA wait for
// a flush and stay with the workers. It reports false, having written
// nothing, when the write must go the ordinary way.
func (c *conn) quickWrite(req rawRequest, buf *[]byte, charge int64) bool {
	x := c.exp
	if x.quick == nil || req.Flags&cmdFlagFUA != 0 {
		return false
	}
	done, err := x.quick.QuickWriteAt((*buf)[replyHeadroom:], int64(req.Offset))
	if !done {
		return false
	}
	c.srv.pool.put(buf)
	c.quickWritten(req, charge, err)
	return true
}

// quickWritten answers a quick write whose payload is done with: only the
// reply is still charged.
func (c *conn) quickWritten(req rawRequest, charge int64, err error) {
	c.release(charge - replyCost)
	if err != nil {
		c.reply(&req, errnoFor(err), replyCost)
		return
	}
	r := reply{smallN: simpleReplyLen, budget: replyCost}
	putReplyHeader(r.small[:], req.Handle, errnoOK)
	c.answer(&r, 0)
}

// quickWriteInPlace is quickWrite for a payload that fits the request
// reader: the backend is handed the payload where the reader received it,
// not a copy. Profiles of 64 KiB random writes at queue depth 32 showed
// that copy as the largest cost in the server's own code, as large as
// checksumming the overlay block the write becomes. A payload the backend
// cannot take quickly is copied out to the ordinary path's buffer; a failed
// read breaks the connection. It reports whether the request was dealt
// with.
func (c *conn) quickWriteInPlace(req rawRequest, charge int64) bool {
	x := c.exp
	n := int(req.Length)
	if x.quick == nil || req.Flags&cmdFlagFUA != 0 || n == 0 || n > c.r.Size() {
		return false
	}
	p, err := c.peekPayload(n)
	if err != nil {
		c.release(charge)
		c.broken()
		return true
	}
	done, err := x.quick.QuickWriteAt(p, int64(req.Offset))
	if !done {
		buf := c.srv.pool.get(n)
		copy((*buf)[replyHeadroom:], p)
		c.r.Discard(n)
		c.serveCharged(req, buf, charge)
		return true
	}
	c.r.Discard(n)
	c.quickWritten(req, charge, err)
	return true
}
