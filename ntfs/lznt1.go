package ntfs

// LZNT1, the compression of NTFS compressed streams: data is kept in
// compression units (16 clusters); a unit whose runs end in a sparse run
// holds LZNT1 chunks, each expanding to at most 4 KiB.
const (
	lzntChunkSize       = 4096
	lzntChunkSizeMask   = 0x0fff
	lzntChunkCompressed = 0x8000
	lzntMinMatch        = 3
)

// decompressLZNT1 expands src into dst (a whole compression unit) and
// returns how many bytes it produced; the rest of dst is zeroed. off is
// src's absolute offset, for errors.
func decompressLZNT1(dst, src []byte, off int64) (int, error) {
	out := 0
	in := 0
	for in+2 <= len(src) && out < len(dst) {
		h := le16(src[in:])
		if h == 0 {
			break
		}
		size := int(h&lzntChunkSizeMask) + 1
		start := in + 2
		end := start + size
		if end > len(src) {
			return 0, formatErr(off+int64(in), "LZNT1 chunk", ErrBadAttribute, h, "chunk runs past the compression unit")
		}
		chunkOut := dst[out:min(out+lzntChunkSize, len(dst))]
		if h&lzntChunkCompressed == 0 {
			if size > len(chunkOut) {
				return 0, formatErr(off+int64(in), "LZNT1 chunk", ErrBadAttribute, h, "uncompressed chunk larger than 4 KiB")
			}
			copy(chunkOut, src[start:end])
			out += lzntChunkSize
		} else {
			n, err := lzntChunk(chunkOut, src[start:end], off+int64(start))
			if err != nil {
				return 0, err
			}
			clear(chunkOut[n:])
			out += lzntChunkSize
		}
		in = end
	}
	if out < len(dst) {
		clear(dst[out:])
	}
	return min(out, len(dst)), nil
}

// lzntChunk expands one compressed chunk.
func lzntChunk(dst, src []byte, off int64) (int, error) {
	o, i := 0, 0
	for i < len(src) && o < len(dst) {
		flags := src[i]
		i++
		for bit := 0; bit < 8 && i < len(src) && o < len(dst); bit++ {
			if flags&(1<<bit) == 0 {
				dst[o] = src[i]
				o++
				i++
				continue
			}
			if i+2 > len(src) {
				return 0, formatErr(off+int64(i), "LZNT1 chunk", ErrBadAttribute, nil, "truncated back-reference")
			}
			tok := le16(src[i:])
			i += 2
			// The split between displacement and length bits moves with
			// the output position: the further in, the longer the reach.
			lenMask, dispShift := uint16(0x0fff), uint(12)
			for p := o - 1; p >= 0x10; p >>= 1 {
				lenMask >>= 1
				dispShift--
			}
			length := int(tok&lenMask) + lzntMinMatch
			disp := int(tok>>dispShift) + 1
			if disp > o {
				return 0, formatErr(off+int64(i-2), "LZNT1 chunk", ErrBadAttribute, tok, "back-reference before the chunk start")
			}
			for k := 0; k < length && o < len(dst); k++ {
				dst[o] = dst[o-disp]
				o++
			}
		}
	}
	return o, nil
}

// readCompressed reads from a compressed stream unit by unit.
func (s *Stream) readCompressed(p []byte, off int64) error {
	cs := s.v.ClusterSize
	unitBytes := s.compressionUnitClusters * cs
	buf := make([]byte, unitBytes)
	for len(p) > 0 {
		unit := off / unitBytes
		if err := s.readUnit(buf, unit); err != nil {
			return err
		}
		in := off - unit*unitBytes
		n := copy(p, buf[in:])
		// Honour the initialized size inside the unit too.
		if off+int64(n) > s.initSize {
			z := max(0, s.initSize-off)
			if z < int64(n) {
				clear(p[z:n])
			}
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}

// readUnit fills buf with compression unit u: all sparse → zeros, fully
// allocated → stored as is, otherwise LZNT1 data in the allocated clusters.
func (s *Stream) readUnit(buf []byte, u int64) error {
	cs := s.v.ClusterSize
	vcn0 := u * s.compressionUnitClusters
	allocated := int64(0)
	for c := int64(0); c < s.compressionUnitClusters; {
		i := s.findRun(vcn0 + c)
		if i < 0 {
			break
		}
		r := s.Runs[i]
		k := min(r.VCN+r.Length-(vcn0+c), s.compressionUnitClusters-c)
		if !r.Sparse {
			allocated += k
		}
		c += k
	}
	switch {
	case allocated == 0:
		clear(buf)
		return nil
	case allocated == s.compressionUnitClusters:
		return s.readPlainRaw(buf, vcn0*cs)
	}
	comp := make([]byte, allocated*cs)
	if err := s.readPlainRaw(comp, vcn0*cs); err != nil {
		return err
	}
	_, err := decompressLZNT1(buf, comp, s.headerOffset)
	return err
}

// readPlainRaw reads allocated clusters ignoring sizes.
func (s *Stream) readPlainRaw(p []byte, off int64) error {
	extents, err := s.diskExtents(off, int64(len(p)))
	if err != nil {
		return err
	}
	pos := int64(0)
	for _, e := range extents {
		if e.Offset < 0 {
			clear(p[pos : pos+e.Length])
		} else if err := s.v.readAt(p[pos:pos+e.Length], e.Offset, "compressed data"); err != nil {
			return err
		}
		pos += e.Length
	}
	return nil
}
