package cab

// bitReader reads LZX's bit stream: 16-bit little-endian words, each
// consumed from its most significant bit. Past the end of its data it
// loads zeros, so a Huffman look-ahead near the end never fails; whether
// bits past the end were actually consumed is checked by the caller
// (overrun) where the stream must end.
type bitReader struct {
	data []byte
	pos  int    // next byte of data to load (may run past len(data))
	buf  uint64 // unread bits, most significant first
	n    uint   // number of unread bits in buf
	// origin is where word loading last began: LZX's 16-bit alignment is
	// counted from there, as uncompressed blocks (read bytewise) may leave
	// the stream at an odd byte.
	origin int
}

func (b *bitReader) reset(data []byte) {
	*b = bitReader{data: data}
}

// refill tops buf up to at least 49 bits.
func (b *bitReader) refill() {
	for b.n <= 48 {
		var w uint64
		if b.pos+1 < len(b.data) {
			w = uint64(b.data[b.pos]) | uint64(b.data[b.pos+1])<<8
		} else if b.pos < len(b.data) {
			w = uint64(b.data[b.pos])
		}
		b.pos += 2
		b.buf |= w << (48 - b.n)
		b.n += 16
	}
}

func (b *bitReader) consume(k uint) {
	b.buf <<= k
	b.n -= k
}

// bits reads k bits (k <= 32), most significant first.
func (b *bitReader) bits(k uint) uint32 {
	if k == 0 {
		return 0
	}
	if b.n < k {
		b.refill()
	}
	v := uint32(b.buf >> (64 - k))
	b.consume(k)
	return v
}

// consumed is the number of bits read so far.
func (b *bitReader) consumed() int { return b.pos*8 - int(b.n) }

// overrun reports whether more bits were read than the data holds.
func (b *bitReader) overrun() bool { return b.consumed() > len(b.data)*8 }

// alignTo16 moves to the next 16-bit boundary, or one whole word further
// when already on one if always is set (an uncompressed block's 1..16 bits
// of padding), and leaves the reader in byte mode at that position.
func (b *bitReader) alignTo16(always bool) {
	c := b.consumed() - b.origin*8
	if c%16 != 0 {
		c += 16 - c%16
	} else if always {
		c += 16
	}
	b.pos, b.buf, b.n = b.origin+c/8, 0, 0
	b.origin = b.pos
}

// bytes returns the next k bytes in byte mode (after alignTo16), or nil
// when the data holds fewer.
func (b *bitReader) bytes(k int) []byte {
	if b.n != 0 || b.pos+k > len(b.data) {
		return nil
	}
	p := b.data[b.pos : b.pos+k]
	b.pos += k
	b.origin = b.pos
	return p
}
