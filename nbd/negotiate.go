package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
)

// negotiate runs the fixed newstyle handshake. It returns the export the
// client chose, or nil when the connection must close (abort, protocol
// violation, I/O error).
func (c *conn) negotiate(ctx context.Context) *export {
	var greet [serverGreetingLen]byte
	binary.BigEndian.PutUint64(greet[0:], nbdMagic)
	binary.BigEndian.PutUint64(greet[8:], ihaveOpt)
	binary.BigEndian.PutUint16(greet[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(greet[:]); err != nil {
		return nil
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return nil
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	// Only fixed newstyle clients are served: without it there is no way to
	// refuse an option, and every current client sets it.
	if clientFlags&^clientKnownFlags != 0 || clientFlags&clientFixedNewstyle == 0 {
		return nil
	}
	noZeroes := clientFlags&clientNoZeroes != 0

	var hdr [optHeaderLen]byte
	for {
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil
		}
		if binary.BigEndian.Uint64(hdr[0:]) != ihaveOpt {
			return nil
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		length := binary.BigEndian.Uint32(hdr[12:])
		if length > maxOptionLen {
			// EXPORT_NAME has no error reply; others get one after the data
			// is skipped, unless it is too big to skip in reasonable time.
			if opt == optExportName || length > maxDrainLen {
				return nil
			}
			if _, err := io.CopyN(io.Discard, c.r, int64(length)); err != nil {
				return nil
			}
			if !c.optReply(opt, repErrTooBig, nil) {
				return nil
			}
			continue
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return nil
		}
		if c.srv.TLSRequired && !c.tls && opt != optStartTLS && opt != optAbort {
			if opt == optExportName {
				return nil
			}
			if !c.optReply(opt, repErrTLSReqd, nil) {
				return nil
			}
			continue
		}
		switch opt {
		case optExportName:
			e, ok := c.srv.Exports[string(data)]
			if !ok {
				return nil
			}
			x := c.resolve(e)
			n := exportNameReplyLen
			if !noZeroes {
				n += exportNameZeroPad
			}
			rep := make([]byte, n)
			binary.BigEndian.PutUint64(rep[0:], uint64(x.size))
			binary.BigEndian.PutUint16(rep[8:], x.flags)
			if _, err := c.w.Write(rep); err != nil || c.w.Flush() != nil {
				return nil
			}
			return x
		case optAbort:
			c.optReply(opt, repAck, nil)
			return nil
		case optList:
			if !c.optList(data) {
				return nil
			}
		case optStartTLS:
			if !c.startTLS(ctx, data) {
				return nil
			}
		case optStructuredRepl:
			if !c.optStructuredReply(data) {
				return nil
			}
		case optListMetaContext, optSetMetaContext:
			if !c.optMetaContext(opt, data) {
				return nil
			}
		case optInfo, optGo:
			x, ok := c.optInfo(opt, data)
			if !ok {
				return nil
			}
			if x != nil {
				return x
			}
		default:
			if !c.optReply(opt, repErrUnsup, nil) {
				return nil
			}
		}
	}
}

// optReply sends one option reply; false means the connection is dead.
func (c *conn) optReply(opt, typ uint32, data []byte) bool {
	var h [optReplyHeaderLen]byte
	binary.BigEndian.PutUint64(h[0:], optReplyMagic)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	c.w.Write(h[:])
	c.w.Write(data)
	return c.w.Flush() == nil
}

func (c *conn) optList(data []byte) bool {
	if len(data) != 0 {
		return c.optReply(optList, repErrInvalid, nil)
	}
	for name, e := range c.srv.Exports {
		b := make([]byte, 4, 4+len(name)+len(e.Description))
		binary.BigEndian.PutUint32(b, uint32(len(name)))
		b = append(b, name...)
		b = append(b, e.Description...)
		if !c.optReply(optList, repServer, b) {
			return false
		}
	}
	return c.optReply(optList, repAck, nil)
}

// startTLS upgrades the connection; false means it must close.
func (c *conn) startTLS(ctx context.Context, data []byte) bool {
	switch {
	case len(data) != 0:
		return c.optReply(optStartTLS, repErrInvalid, nil)
	case c.srv.TLSConfig == nil:
		return c.optReply(optStartTLS, repErrUnsup, nil)
	case c.tls:
		return c.optReply(optStartTLS, repErrInvalid, nil)
	}
	if !c.optReply(optStartTLS, repAck, nil) {
		return false
	}
	// Bytes pipelined after STARTTLS would be plaintext injected into the
	// TLS session; the spec forbids them, so the connection is dropped.
	if c.r.Buffered() != 0 {
		return false
	}
	tc := tls.Server(c.raw, c.srv.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		return false
	}
	c.nc = tc
	c.tls = true
	// The spec has the server forget everything negotiated in plaintext.
	c.structured = false
	c.metaExport, c.metaAlloc = "", false
	c.r = newRequestReader(tc, readBufferSize)
	c.w = bufio.NewWriterSize(tc, 4096)
	return true
}

// optInfo answers NBD_OPT_INFO and NBD_OPT_GO. It returns the export when GO
// succeeded, nil with ok when negotiation continues, and !ok when the
// connection must close.
func (c *conn) optInfo(opt uint32, data []byte) (x *export, ok bool) {
	// Layout: name length (4), name, request count (2), requests (2 each).
	if len(data) < 4+2 {
		return nil, c.optReply(opt, repErrInvalid, nil)
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-4-2) {
		return nil, c.optReply(opt, repErrInvalid, nil)
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*nreq {
		return nil, c.optReply(opt, repErrInvalid, nil)
	}
	e, found := c.srv.Exports[name]
	if !found {
		return nil, c.optReply(opt, repErrUnknown, nil)
	}
	x = c.resolve(e)

	var b [2 + 8 + 2]byte
	binary.BigEndian.PutUint16(b[0:], infoExport)
	binary.BigEndian.PutUint64(b[2:], uint64(x.size))
	binary.BigEndian.PutUint16(b[10:], x.flags)
	if !c.optReply(opt, repInfo, b[:]) {
		return nil, false
	}
	var sentName, sentDesc bool
	for i := 0; i < nreq; i++ {
		switch binary.BigEndian.Uint16(rest[2*i:]) {
		case infoName:
			if sentName {
				continue
			}
			sentName = true
			if !c.optReply(opt, repInfo, append([]byte{0, byte(infoName)}, x.Name...)) {
				return nil, false
			}
		case infoDescription:
			if sentDesc {
				continue
			}
			sentDesc = true
			if !c.optReply(opt, repInfo, append([]byte{0, byte(infoDescription)}, x.Description...)) {
				return nil, false
			}
		}
	}
	// Block sizes are always sent: they only tell the client what is
	// efficient and the largest payload accepted, which helps every client.
	var bs [2 + 4 + 4 + 4]byte
	binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:], MinBlockSize)
	binary.BigEndian.PutUint32(bs[6:], PreferredBlockSize)
	binary.BigEndian.PutUint32(bs[10:], MaxBlockSize)
	if !c.optReply(opt, repInfo, bs[:]) {
		return nil, false
	}
	if !c.optReply(opt, repAck, nil) {
		return nil, false
	}
	if opt == optGo {
		return x, true
	}
	return nil, true
}
