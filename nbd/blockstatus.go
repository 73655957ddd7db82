package nbd

import (
	"encoding/binary"

	"github.com/kvmify/kvmify/disk"
)

// blockDesc is one NBD block status descriptor: a run and its
// base:allocation state flags.
type blockDesc struct {
	Length uint32
	Flags  uint32
}

// stateFlags translates a backend's extent flags into base:allocation
// flags, dropping anything the context does not define.
func stateFlags(f disk.ExtentFlags) uint32 {
	var s uint32
	if f&disk.ExtentHole != 0 {
		s |= stateHole
	}
	if f&disk.ExtentZero != 0 {
		s |= stateZero
	}
	return s
}

// describe answers a base:allocation query for length bytes at off of an
// export of the given size; validateRequest has checked that the range is
// non-empty and inside the export. Without REQ_ONE the descriptors cover
// the range, except that at most maxDescs are returned (the client asks
// again from where they stop), and the last may run past the range as far
// as the backend said, never past size. With REQ_ONE there is exactly one
// descriptor, no longer than length.
func describe(e disk.Extenter, size, off, length int64, reqOne bool) ([]blockDesc, error) {
	if e == nil {
		// The spec lets a server that cannot tell report everything as
		// allocated data.
		return []blockDesc{{Length: uint32(length)}}, nil
	}
	maxDescs := maxBlockDescs
	if reqOne {
		maxDescs = 1
	}
	end := off + length
	pos := off
	var descs []blockDesc
scan:
	for pos < end && len(descs) < maxDescs {
		exts, err := e.Extents(pos, end-pos)
		if err == nil {
			// A layer that breaks the contract must not make the server
			// loop, panic or describe bytes past the export.
			err = disk.CheckExtents(exts, pos, end-pos, size)
		}
		if err != nil {
			if len(descs) > 0 {
				// What is known is a valid shorter answer.
				break
			}
			return nil, err
		}
		for _, ex := range exts {
			flags := stateFlags(ex.Flags)
			n := ex.Length
			for n > 0 && pos < end {
				var d int64
				if last := len(descs) - 1; last >= 0 && descs[last].Flags == flags && descs[last].Length < maxDescLen {
					// Runs split across Extents calls are rejoined.
					d = min(n, maxDescLen-int64(descs[last].Length))
					descs[last].Length += uint32(d)
				} else if len(descs) < maxDescs {
					d = min(n, maxDescLen)
					descs = append(descs, blockDesc{Length: uint32(d), Flags: flags})
				} else {
					break scan
				}
				pos += d
				n -= d
			}
			if pos >= end {
				break scan
			}
		}
	}
	if reqOne && int64(descs[0].Length) > length {
		descs[0].Length = uint32(length)
	}
	return descs, nil
}

// blockStatus answers NBD_CMD_BLOCK_STATUS with one
// NBD_REPLY_TYPE_BLOCK_STATUS chunk for base:allocation, or an error chunk.
func (c *conn) blockStatus(req *rawRequest, charge int64) {
	x := c.exp
	descs, err := describe(x.extenter, x.size, int64(req.Offset), int64(req.Length), req.Flags&cmdFlagReqOne != 0)
	if err != nil {
		c.errorChunk(req.Handle, errnoFor(err), charge)
		return
	}
	n := blockStatusHdrLen + len(descs)*blockDescLen
	b := make([]byte, structReplyLen+n)
	putStructHeader(b, replyFlagDone, replyTypeBlockStatus, req.Handle, uint32(n))
	p := b[structReplyLen:]
	binary.BigEndian.PutUint32(p, baseAllocationID)
	p = p[blockStatusHdrLen:]
	for _, d := range descs {
		binary.BigEndian.PutUint32(p[0:], d.Length)
		binary.BigEndian.PutUint32(p[blockDescFlagsOff:], d.Flags)
		p = p[blockDescLen:]
	}
	c.queue(&reply{data: b, budget: charge})
}
