package registry

import (
	"encoding/binary"
	"math/bits"
)

// marvin32Block is Marvin32's input width: the data is consumed as
// little-endian 32-bit words.
const marvin32Block = 4

// marvin32Pad is the marker Marvin32 appends after the data (before the last
// mixing rounds), shifted past the 0..3 trailing bytes.
const marvin32Pad = 0x80

// Marvin32 computes Microsoft's Marvin32 hash of data under a 64-bit seed; the
// result packs the two 32-bit state words as high<<32 | low, the layout the
// registry stores in a log entry's Hash-1 and Hash-2 fields.
func Marvin32(seed uint64, data []byte) uint64 {
	lo, hi := uint32(seed), uint32(seed>>32)
	for len(data) >= marvin32Block {
		lo += binary.LittleEndian.Uint32(data)
		lo, hi = marvin32Mix(lo, hi)
		data = data[marvin32Block:]
	}
	// The trailing bytes sit below the pad marker, first byte lowest.
	final := uint32(marvin32Pad)
	for i := len(data) - 1; i >= 0; i-- {
		final = final<<8 | uint32(data[i])
	}
	lo += final
	lo, hi = marvin32Mix(lo, hi)
	lo, hi = marvin32Mix(lo, hi)
	return uint64(hi)<<32 | uint64(lo)
}

// marvin32Mix is one Marvin32 round over the two state words.
func marvin32Mix(lo, hi uint32) (uint32, uint32) {
	hi ^= lo
	lo = bits.RotateLeft32(lo, 20)
	lo += hi
	hi = bits.RotateLeft32(hi, 9)
	hi ^= lo
	lo = bits.RotateLeft32(lo, 27)
	lo += hi
	hi = bits.RotateLeft32(hi, 19)
	return lo, hi
}
