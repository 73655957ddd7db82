package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// refuseTimeout bounds how long a refused connection is kept.
const refuseTimeout = 5 * time.Second

// maxRefusedOptions bounds the options a refused client may send before it
// is closed; real clients ask for GO after two or three others.
const maxRefusedOptions = 16

// refuse answers a connection over the MaxConnections limit: it greets the
// client like any other so that the client can be told why, answers every
// option with NBD_REP_ERR_POLICY and a message until the client gives up,
// and closes. It buffers little and keeps the
// connection for at most refuseTimeout.
func (c *conn) refuse() {
	c.raw.SetDeadline(time.Now().Add(min(refuseTimeout, c.srv.handshakeTimeout())))
	c.r = newRequestReader(c.nc, 4096)
	c.w = bufio.NewWriterSize(c.nc, 4096)
	var greet [serverGreetingLen]byte
	binary.BigEndian.PutUint64(greet[0:], nbdMagic)
	binary.BigEndian.PutUint64(greet[8:], ihaveOpt)
	binary.BigEndian.PutUint16(greet[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.nc.Write(greet[:]); err != nil {
		return
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.r, cf[:]); err != nil {
		return
	}
	msg := []byte(fmt.Sprintf("server busy: too many connections (limit %d); try again later", c.srv.limits.MaxConnections))
	var hdr [optHeaderLen]byte
	for range maxRefusedOptions {
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		length := binary.BigEndian.Uint32(hdr[12:])
		if binary.BigEndian.Uint64(hdr[0:]) != ihaveOpt || opt == optExportName || length > maxOptionLen {
			// EXPORT_NAME has no error reply: closing is the refusal.
			return
		}
		if _, err := c.r.Discard(int(length)); err != nil {
			return
		}
		if opt == optAbort {
			c.optReply(opt, repAck, nil)
			return
		}
		// After GO is refused, clients send ABORT: closing before it
		// would make them report the broken pipe instead of the message.
		if !c.optReply(opt, repErrPolicy, msg) {
			return
		}
	}
}
