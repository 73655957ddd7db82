package nbd

import "encoding/binary"

// putStructHeader writes a structured reply chunk header at the start of b.
func putStructHeader(b []byte, flags, typ uint16, handle uint64, length uint32) {
	binary.BigEndian.PutUint32(b[0:], structRepMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint32(b[16:], length)
}

// readReply writes the header of a successful READ reply into the headroom
// of b (replyHeadroom bytes, then the data) and returns the whole reply.
func (x *export) readReply(b []byte, handle, off uint64) []byte {
	h := x.readReplyHeader((*[replyHeadroom]byte)(b), handle, off, len(b)-replyHeadroom)
	return b[replyHeadroom-len(h):]
}

// readReplyHeader writes the header of a successful n-byte READ reply at
// the end of h and returns it. With structured replies it is one
// NBD_REPLY_TYPE_OFFSET_DATA chunk marked done, which also satisfies
// NBD_CMD_FLAG_DF.
func (x *export) readReplyHeader(h *[replyHeadroom]byte, handle, off uint64, n int) []byte {
	if !x.structured {
		s := h[replyHeadroom-simpleReplyLen:]
		putReplyHeader(s, handle, errnoOK)
		return s
	}
	if n == 0 {
		// A data chunk must carry at least one byte; an empty read is
		// answered with the chunk that means "done, no content".
		s := h[replyHeadroom-structReplyLen:]
		putStructHeader(s, replyFlagDone, replyTypeNone, handle, 0)
		return s
	}
	s := h[replyHeadroom-structReplyLen-offsetDataHdrLen:]
	putStructHeader(s, replyFlagDone, replyTypeOffsetData, handle, uint32(offsetDataHdrLen+n))
	binary.BigEndian.PutUint64(s[structReplyLen:], off)
	return s
}

// reply answers a request whose reply carries no payload. Once structured
// replies are negotiated an error must be an error chunk for READ and
// BLOCK_STATUS and is preferred for the rest (spec), while success on the
// other commands may stay a simple reply, which is shorter.
// The reply gives charge back to the budgets once written.
func (c *conn) reply(req *rawRequest, errno uint32, charge int64) {
	if errno == errnoOK || !c.exp.structured {
		c.simpleReply(req.Handle, errno, charge)
		return
	}
	c.errorChunk(req.Handle, errno, charge)
}

// errorChunk sends a final NBD_REPLY_TYPE_ERROR chunk without a message.
func (c *conn) errorChunk(handle uint64, errno uint32, charge int64) {
	r := reply{smallN: structReplyLen + errorChunkLen, budget: charge}
	putStructHeader(r.small[:], replyFlagDone, replyTypeError, handle, errorChunkLen)
	binary.BigEndian.PutUint32(r.small[structReplyLen:], errno)
	// The message length at structReplyLen+4 stays zero.
	c.queue(&r)
}
