// Package inflate decodes a DEFLATE (RFC 1951) or zlib (RFC 1950) stream
// held whole in memory into a buffer of known size: one compressed qcow2
// cluster or VMDK grain. It exists for speed: a compressed image is served
// by decoding clusters of mostly literals, where compress/flate and
// github.com/klauspost/compress spend their time in a byte-at-a-time
// io.ByteReader and a window copy; decoding a slice straight into the
// cluster buffer needs neither (README, "Container readers against
// qemu-nbd", has the numbers). Every fault is an error: a bad block type, a
// bad code table, an invalid code or distance, input that ends early, and
// for zlib a bad header or Adler-32.
package inflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/kvmify/kvmify/internal/adler"
	"math/bits"
)

// Sentinels that decoding errors wrap, for errors.Is.
var (
	// ErrCorrupt means the stream breaks the format.
	ErrCorrupt = errors.New("corrupt deflate stream")
	// ErrTruncated means the input ends before the stream does.
	ErrTruncated = errors.New("deflate stream truncated")
	// ErrTooLong means a zlib stream decodes to more than the buffer.
	ErrTooLong = errors.New("deflate stream holds more data than the buffer")
	// ErrChecksum means a zlib stream's Adler-32 does not match its data.
	ErrChecksum = errors.New("zlib checksum mismatch")
)

// Error is a decoding fault at a byte of the input.
type Error struct {
	Offset int // byte of the input being decoded when it was found
	What   string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s at input byte %d: %v", e.What, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Table entries: bits 0-4 are the code length (for a link, the subtable's
// index bits), bit 5 marks a link to a subtable, bits 16-31 the symbol (for
// a link, the subtable's start). A zero entry is a bit pattern no code
// has.
const (
	entryLink = 1 << 5
	litBits   = 10 // primary table index bits of the literal/length code
	distBits  = 8  // and of the distance code
	clenBits  = 7  // code length codes are at most 7 bits: one level
	maxCode   = 15
)

// table is a two-level decoding table of a canonical Huffman code.
type table struct {
	e    []uint32
	bits uint
}

// Decoder holds the tables of one stream; reuse it (one goroutine at a
// time) to avoid rebuilding their storage.
type Decoder struct {
	lit, dist, clen       table
	fixedLit, fixedDist   table
	fixed                 bool
	lens                  [286 + 30]uint8
	codes                 [286 + 30]uint16
	subMax                [1 << litBits]uint8
	fixedLens, fixedDLens []uint8
}

// Lengths and distances: base values and extra bits by symbol (RFC 1951
// 3.2.5).
var (
	lenBase   = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra  = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase  = [30]uint32{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	clenOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// build makes t decode the canonical code of lens (a zero length: no
// code). Like zlib and compress/flate it accepts only complete codes, and
// the one incomplete code of a single 1-bit symbol.
func (d *Decoder) build(t *table, lens []uint8, pbits uint) bool {
	var count [maxCode + 1]int
	maxLen := 0
	for _, l := range lens {
		count[l]++
		maxLen = max(maxLen, int(l))
	}
	t.bits = pbits
	psize := 1 << pbits
	if cap(t.e) < psize {
		t.e = make([]uint32, psize, 2*psize)
	}
	t.e = t.e[:psize]
	clear(t.e)
	if maxLen == 0 {
		return true // no codes: decoding any symbol fails
	}
	count[0] = 0
	var next [maxCode + 2]int
	code := 0
	for l := 1; l <= maxLen; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	if next[maxLen]+count[maxLen] != 1<<maxLen && !(maxLen == 1 && count[1] == 1) {
		return false
	}
	sub := d.subMax[:psize]
	clear(sub)
	pmask := uint32(psize - 1)
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		rev := uint32(bits.Reverse16(uint16(next[l]))) >> (16 - l)
		next[l]++
		d.codes[sym] = uint16(rev)
		if uint(l) > pbits {
			p := rev & pmask
			sub[p] = max(sub[p], l)
		}
	}
	for p, l := range sub {
		if l == 0 {
			continue
		}
		sb := uint(l) - pbits
		t.e[p] = uint32(len(t.e))<<16 | entryLink | uint32(sb)
		for range 1 << sb {
			t.e = append(t.e, 0)
		}
	}
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		rev := uint32(d.codes[sym])
		e := uint32(sym)<<16 | uint32(l)
		if uint(l) <= pbits {
			for i := rev; i < uint32(psize); i += 1 << l {
				t.e[i] = e
			}
			continue
		}
		link := t.e[rev&pmask]
		start, sb := link>>16, uint(link&31)
		for i := rev >> pbits; i < 1<<sb; i += 1 << (uint(l) - pbits) {
			t.e[start+i] = e
		}
	}
	return true
}

// buildFixed makes the tables of fixed-code blocks once per Decoder.
func (d *Decoder) buildFixed() {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	d.build(&d.fixedLit, l[:], litBits)
	var dl [32]uint8
	for i := range dl {
		dl[i] = 5
	}
	d.build(&d.fixedDist, dl[:], distBits)
	d.fixed = true
}

// state is the bit reader over the input. Bits above nb may hold the
// input's next bytes (loaded ahead but not counted), never anything else,
// so OR-ing in a reload is harmless.
type state struct {
	src []byte
	pos int // next byte not counted in nb
	b   uint64
	nb  uint
}

// refill counts at least 56 bits when 8 input bytes remain, else as many
// as remain.
func (s *state) refill() {
	if s.pos+8 <= len(s.src) {
		s.b |= binary.LittleEndian.Uint64(s.src[s.pos:]) << s.nb
		s.pos += int(63-s.nb) >> 3
		s.nb |= 56
		return
	}
	for s.nb <= 56 && s.pos < len(s.src) {
		s.b |= uint64(s.src[s.pos]) << s.nb
		s.pos++
		s.nb += 8
	}
}

// need makes n (<= 56) bits available or reports truncation.
func (s *state) need(n uint) bool {
	if s.nb < n {
		s.refill()
	}
	return s.nb >= n
}

// used is how many input bytes the decoder has consumed, the last partial
// byte included.
func (s *state) used() int { return s.pos - int(s.nb>>3) }

func (s *state) fail(what string, err error) error {
	return &Error{Offset: s.used(), What: what, Err: err}
}

// Deflate decodes the raw DEFLATE stream in src into dst and stops as soon
// as dst is full, as QEMU does for a compressed cluster, whose stored
// length is rounded up to sectors. It returns the bytes written: fewer
// than len(dst) only when the stream ends first.
func (d *Decoder) Deflate(dst, src []byte) (int, error) {
	n, _, err := d.decode(dst, src, true)
	return n, err
}

// Zlib decodes the zlib stream in src into dst: the whole stream, which
// must end within dst (ErrTooLong otherwise) and match its Adler-32. A
// preset dictionary is refused. It returns the bytes written.
func (d *Decoder) Zlib(dst, src []byte) (int, error) {
	if len(src) < 2 {
		return 0, &Error{What: "zlib header", Err: ErrTruncated}
	}
	cmf, flg := src[0], src[1]
	switch {
	case cmf&0x0f != 8 || cmf>>4 > 7:
		return 0, &Error{What: fmt.Sprintf("zlib header: method 0x%02x", cmf), Err: ErrCorrupt}
	case (uint(cmf)<<8|uint(flg))%31 != 0:
		return 0, &Error{What: "zlib header check bits", Err: ErrCorrupt}
	case flg&0x20 != 0:
		return 0, &Error{What: "zlib header: preset dictionary", Err: ErrCorrupt}
	}
	n, used, err := d.decode(dst, src[2:], false)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Offset += 2
		}
		return n, err
	}
	used += 2
	if used+4 > len(src) {
		return n, &Error{Offset: used, What: "zlib checksum", Err: ErrTruncated}
	}
	if want, got := binary.BigEndian.Uint32(src[used:]), adler.Checksum(dst[:n]); want != got {
		return n, &Error{Offset: used, What: fmt.Sprintf("zlib checksum 0x%08x of data 0x%08x", want, got), Err: ErrChecksum}
	}
	return n, nil
}

// decode decodes the stream; stop ends it (successfully) once dst is full,
// otherwise more output than dst holds is ErrTooLong. It returns the bytes
// written and the input bytes consumed.
func (d *Decoder) decode(dst, src []byte, stop bool) (int, int, error) {
	s := state{src: src}
	n := 0
	for {
		if stop && n == len(dst) {
			return n, s.used(), nil
		}
		if !s.need(3) {
			return n, 0, s.fail("block header", ErrTruncated)
		}
		final := s.b&1 != 0
		typ := (s.b >> 1) & 3
		s.b >>= 3
		s.nb -= 3
		var err error
		switch typ {
		case 0:
			n, err = d.stored(&s, dst, n, stop)
		case 1:
			if !d.fixed {
				d.buildFixed()
			}
			n, err = d.huffman(&s, dst, n, stop, &d.fixedLit, &d.fixedDist)
		case 2:
			if err = d.dynamic(&s); err == nil {
				n, err = d.huffman(&s, dst, n, stop, &d.lit, &d.dist)
			}
		default:
			return n, 0, s.fail("block type 3", ErrCorrupt)
		}
		if err != nil {
			if err == errStop {
				return n, s.used(), nil
			}
			return n, 0, err
		}
		if final {
			return n, s.used(), nil
		}
	}
}

// errStop ends decoding early with success: dst is full and stop is set.
var errStop = errors.New("output buffer full")

// full is what writing past dst means.
func full(s *state, stop bool) error {
	if stop {
		return errStop
	}
	return s.fail("data past the end of the buffer", ErrTooLong)
}

// stored copies a stored block.
func (d *Decoder) stored(s *state, dst []byte, n int, stop bool) (int, error) {
	// The block starts at the next byte boundary: give back the whole
	// bytes counted in the bit buffer.
	s.nb -= s.nb & 7
	s.pos -= int(s.nb >> 3)
	s.b, s.nb = 0, 0
	if s.pos+4 > len(s.src) {
		return n, s.fail("stored block length", ErrTruncated)
	}
	ln := int(binary.LittleEndian.Uint16(s.src[s.pos:]))
	if nl := binary.LittleEndian.Uint16(s.src[s.pos+2:]); uint16(ln) != ^nl {
		return n, s.fail(fmt.Sprintf("stored block length %d with complement 0x%04x", ln, nl), ErrCorrupt)
	}
	s.pos += 4
	k := min(ln, len(dst)-n)
	if s.pos+k > len(s.src) {
		return n, s.fail("stored block", ErrTruncated)
	}
	copy(dst[n:], s.src[s.pos:s.pos+k])
	s.pos += k
	n += k
	if k < ln {
		if !stop && s.pos+ln-k > len(s.src) {
			return n, s.fail("stored block", ErrTruncated)
		}
		return n, full(s, stop)
	}
	return n, nil
}

// dynamic reads a dynamic block's code tables.
func (d *Decoder) dynamic(s *state) error {
	if !s.need(14) {
		return s.fail("dynamic block header", ErrTruncated)
	}
	nlit := int(s.b&31) + 257
	ndist := int(s.b>>5&31) + 1
	nclen := int(s.b>>10&15) + 4
	s.b >>= 14
	s.nb -= 14
	if nlit > 286 || ndist > 30 {
		return s.fail(fmt.Sprintf("dynamic block counts %d literal/length and %d distance codes", nlit, ndist), ErrCorrupt)
	}
	var cl [19]uint8
	for i := range nclen {
		if !s.need(3) {
			return s.fail("code length code lengths", ErrTruncated)
		}
		cl[clenOrder[i]] = uint8(s.b & 7)
		s.b >>= 3
		s.nb -= 3
	}
	if !d.build(&d.clen, cl[:], clenBits) {
		return s.fail("code length code (not a complete prefix code)", ErrCorrupt)
	}
	lens := d.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if s.nb < 7+7 {
			s.refill()
		}
		e := d.clen.e[s.b&(1<<clenBits-1)]
		l := uint(e & 31)
		if l == 0 {
			return s.fail("code length code", ErrCorrupt)
		}
		if l > s.nb {
			return s.fail("code lengths", ErrTruncated)
		}
		s.b >>= l
		s.nb -= l
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		var eb uint
		switch sym {
		case 16:
			if i == 0 {
				return s.fail("code length repeat with nothing before it", ErrCorrupt)
			}
			rep, val, eb = 3, lens[i-1], 2
		case 17:
			rep, eb = 3, 3
		default:
			rep, eb = 11, 7
		}
		if eb > s.nb {
			return s.fail("code lengths", ErrTruncated)
		}
		rep += int(s.b & (1<<eb - 1))
		s.b >>= eb
		s.nb -= eb
		if i+rep > len(lens) {
			return s.fail("code length repeat past the last code", ErrCorrupt)
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if lens[256] == 0 {
		return s.fail("literal/length code without an end-of-block code", ErrCorrupt)
	}
	if !d.build(&d.lit, lens[:nlit], litBits) {
		return s.fail("literal/length code (not a complete prefix code)", ErrCorrupt)
	}
	if !d.build(&d.dist, lens[nlit:], distBits) {
		return s.fail("distance code (not a complete prefix code)", ErrCorrupt)
	}
	return nil
}

// huffman decodes the symbols of a Huffman-coded block into dst from n.
// This loop is where a compressed image's read time goes, so the bit
// reader lives in locals here (registers, not memory).
func (d *Decoder) huffman(s *state, dst []byte, n int, stop bool, lt, dt *table) (int, error) {
	lbits, dbits := lt.bits, dt.bits
	lmask := uint64(1)<<lbits - 1
	dmask := uint64(1)<<dbits - 1
	le, de := lt.e, dt.e
	src, pos, b, nb := s.src, s.pos, s.b, s.nb
	end := len(dst)
	// The locals go back to s before every return and slow refill.
	for {
		if nb < 48 {
			if pos+8 <= len(src) {
				b |= binary.LittleEndian.Uint64(src[pos:]) << nb
				pos += int(63-nb) >> 3
				nb |= 56
			} else {
				s.pos, s.b, s.nb = pos, b, nb
				s.refill()
				pos, b, nb = s.pos, s.b, s.nb
			}
		}
		e := le[b&lmask]
		if e&entryLink != 0 {
			e = le[e>>16+uint32(b>>lbits)&(1<<(e&31)-1)]
		}
		l := uint(e & 31)
		if l-1 >= nb { // l == 0 (no such code) or more bits than are left
			s.pos, s.b, s.nb = pos, b, nb
			if l == 0 {
				return n, s.fail("literal/length code", ErrCorrupt)
			}
			return n, s.fail("literal/length code", ErrTruncated)
		}
		b >>= l
		nb -= l
		sym := e >> 16
		if sym < 256 {
			if n >= end {
				s.pos, s.b, s.nb = pos, b, nb
				return n, full(s, stop)
			}
			dst[n] = byte(sym)
			n++
			if stop && n == end {
				s.pos, s.b, s.nb = pos, b, nb
				return n, errStop
			}
			continue
		}
		if sym == 256 {
			s.pos, s.b, s.nb = pos, b, nb
			return n, nil
		}
		sym -= 257
		if sym >= 29 {
			s.pos, s.b, s.nb = pos, b, nb
			return n, s.fail(fmt.Sprintf("length symbol %d", sym+257), ErrCorrupt)
		}
		eb := uint(lenExtra[sym])
		if eb > nb {
			s.pos, s.b, s.nb = pos, b, nb
			return n, s.fail("length", ErrTruncated)
		}
		length := int(lenBase[sym]) + int(b&(1<<eb-1))
		b >>= eb
		nb -= eb
		if nb < 28 {
			s.pos, s.b, s.nb = pos, b, nb
			s.refill()
			pos, b, nb = s.pos, s.b, s.nb
		}
		e = de[b&dmask]
		if e&entryLink != 0 {
			e = de[e>>16+uint32(b>>dbits)&(1<<(e&31)-1)]
		}
		l = uint(e & 31)
		if l-1 >= nb {
			s.pos, s.b, s.nb = pos, b, nb
			if l == 0 {
				return n, s.fail("distance code", ErrCorrupt)
			}
			return n, s.fail("distance code", ErrTruncated)
		}
		b >>= l
		nb -= l
		dsym := e >> 16
		if dsym >= 30 {
			s.pos, s.b, s.nb = pos, b, nb
			return n, s.fail(fmt.Sprintf("distance symbol %d", dsym), ErrCorrupt)
		}
		eb = uint(distExtra[dsym])
		if eb > nb {
			s.pos, s.b, s.nb = pos, b, nb
			return n, s.fail("distance", ErrTruncated)
		}
		dist := int(distBase[dsym]) + int(b&(1<<eb-1))
		b >>= eb
		nb -= eb
		if dist > n {
			s.pos, s.b, s.nb = pos, b, nb
			return n, s.fail(fmt.Sprintf("distance %d before the start of the data (%d bytes)", dist, n), ErrCorrupt)
		}
		k := min(length, end-n)
		if dist >= k {
			copy(dst[n:n+k], dst[n-dist:])
		} else {
			// Overlapping: the period repeats, so each copy can take
			// everything written so far and doubles.
			for i := 0; i < k; {
				i += copy(dst[n+i:n+k], dst[n-dist:n+i])
			}
		}
		n += k
		if k < length {
			s.pos, s.b, s.nb = pos, b, nb
			return n, full(s, stop)
		}
		if stop && n == end {
			s.pos, s.b, s.nb = pos, b, nb
			return n, errStop
		}
	}
}
