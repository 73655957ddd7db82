// Package adler computes Adler-32 (RFC 1950) faster than hash/adler32.
//
// An E01 chunk's, a VMDK grain's or a zlib stream's Adler-32 is computed on
// every first read of it, so its speed bounds cold reads. hash/adler32 adds one byte at a time
// (s2 depends on every s1 before it, about 3 GB/s here); Checksum adds
// eight bytes per step from one 64-bit load:
//
//	s1 += b0+…+b7
//	s2 += 8·s1 + 8·b0 + 7·b1 + … + 1·b7
//
// The byte sum and the weighted sum come from multiplying the even and odd
// bytes, spread into four 16-bit lanes, by constants whose top lane
// collects the wanted sum; every lane's partial sum stays below 2^16, so no
// carry crosses into the top lane. Plain Go, no assembly; fuzzed against
// hash/adler32.
package adler

import "encoding/binary"

const (
	adlerMod  = 65521
	adlerNMax = 5552 // most bytes before s2 can overflow 32 bits (zlib's NMAX); a multiple of 16
	lanes     = 0x00ff00ff00ff00ff
	onesLanes = 0x0001000100010001
	evenW     = 2 | 4<<16 | 6<<32 | 8<<48 // weights of b6, b4, b2, b0
	oddW      = 1 | 3<<16 | 5<<32 | 7<<48 // weights of b7, b5, b3, b1
)

// Checksum is the Adler-32 checksum of p.
func Checksum(p []byte) uint32 {
	s1, s2 := uint32(1), uint32(0)
	for len(p) > 0 {
		n := min(len(p), adlerNMax)
		q := p[:n]
		p = p[n:]
		for len(q) >= 32 {
			// Four words at once: the lanes of the words are added first
			// (each lane stays below 2^16 through the multiplications, see
			// above), so 32 bytes cost four multiplications.
			w0 := binary.LittleEndian.Uint64(q)
			w1 := binary.LittleEndian.Uint64(q[8:])
			w2 := binary.LittleEndian.Uint64(q[16:])
			w3 := binary.LittleEndian.Uint64(q[24:])
			b0 := w0&lanes + (w0>>8)&lanes
			b1 := w1&lanes + (w1>>8)&lanes
			b2 := w2&lanes + (w2>>8)&lanes
			e := w0&lanes + w1&lanes + w2&lanes + w3&lanes
			o := (w0>>8)&lanes + (w1>>8)&lanes + (w2>>8)&lanes + (w3>>8)&lanes
			sum := uint32(((e + o) * onesLanes) >> 48)
			// Bytes of word j weigh 8·(3-j) more than those of word 3.
			ahead := uint32(((3*b0 + 2*b1 + b2) * onesLanes) >> 48)
			wt := uint32((e*evenW + o*oddW) >> 48)
			s2 += 32*s1 + 8*ahead + wt
			s1 += sum
			q = q[32:]
		}
		for len(q) >= 16 {
			w0 := binary.LittleEndian.Uint64(q)
			w1 := binary.LittleEndian.Uint64(q[8:])
			e0, o0 := w0&lanes, (w0>>8)&lanes
			e1, o1 := w1&lanes, (w1>>8)&lanes
			sum0 := uint32(((e0 + o0) * onesLanes) >> 48)
			sum1 := uint32(((e1 + o1) * onesLanes) >> 48)
			wt0 := uint32((e0*evenW)>>48) + uint32((o0*oddW)>>48)
			wt1 := uint32((e1*evenW)>>48) + uint32((o1*oddW)>>48)
			s2 += 16*s1 + 8*sum0 + wt0 + wt1
			s1 += sum0 + sum1
			q = q[16:]
		}
		for _, b := range q {
			s1 += uint32(b)
			s2 += s1
		}
		s1 %= adlerMod
		s2 %= adlerMod
	}
	return s2<<16 | s1
}
