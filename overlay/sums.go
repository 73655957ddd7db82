package overlay

import (
	"fmt"
	"hash/crc32"
)

// Block checksums: every sumSize bytes of every slot have a CRC-32C, kept
// in memory per slot (o.sums, guarded by o.mu) and committed in the map
// record next to the entry that names the slot. They are computed when a
// block is written, from the bytes in hand, and checked on every read of
// overlay data; see the package documentation.

// sumsBuf holds the checksums of one default-size block on the stack;
// get allocates only for the larger block sizes a header may name.
type sumsBuf [defaultBlockSize / sumSize]uint32

func (b *sumsBuf) get(n int) []uint32 {
	if n <= len(b) {
		return b[:n]
	}
	return make([]uint32, n)
}

// sumGranules stores the CRC-32C of each sumSize granule of b in sums.
func sumGranules(sums []uint32, b []byte) {
	for i := range sums {
		sums[i] = crc32.Checksum(b[i*sumSize:(i+1)*sumSize], crcTable)
	}
}

// setSums records vals as the checksums of slot s's granules from first
// on. The caller holds o.mu for writing.
func (o *Overlay) setSums(s int64, first int, vals []uint32) {
	need := int((s + 1) * int64(o.spb))
	if need > len(o.sums) {
		grown := make([]uint32, max(need, 2*len(o.sums)))
		copy(grown, o.sums)
		o.sums = grown
	}
	copy(o.sums[int(s)*o.spb+first:], vals)
}

// copySums copies slot s's checksums from granule first on into dst. The
// caller holds o.mu.
func (o *Overlay) copySums(dst []uint32, s int64, first int) {
	copy(dst, o.sums[int(s)*o.spb+first:])
}

// slotSums returns slot s's checksums, for a map record. The caller holds
// o.mu.
func (o *Overlay) slotSums(s int64) []uint32 {
	return o.sums[int(s)*o.spb : int(s+1)*o.spb]
}

// verify checks b, granules of slot s (block v) from byte lo of the block
// on, against want.
func (o *Overlay) verify(b []byte, want []uint32, v, s int64, lo int) error {
	for i, w := range want {
		if got := crc32.Checksum(b[i*sumSize:(i+1)*sumSize], crcTable); got != w {
			at := lo + i*sumSize
			de := &DataError{Path: o.path, Block: v, DiskOffset: v*int64(o.bs) + int64(at),
				Slot: s, FileOffset: o.slotOffset(s) + int64(at), Want: w, Got: got}
			if o.onDataError != nil {
				if _, seen := o.reported.LoadOrStore([2]int64{v, s}, true); !seen {
					o.onDataError(de)
				}
			}
			return de
		}
	}
	return nil
}

// writeInPlace writes n bytes at offset a of slot s, which block v owns
// and no commit references: data, or zeros when data is nil. The granules
// the write covers only in part are read first (and verified against old,
// their checksums before the write, from granule a/sumSize on), so that
// their new checksums cover what they hold.
func (o *Overlay) writeInPlace(v, s int64, a, n int, data []byte, old []uint32) error {
	lo := a &^ (sumSize - 1)
	hi := (a + n + sumSize - 1) &^ (sumSize - 1)
	buf := data
	if lo != a || hi != a+n || data == nil {
		bp := o.bufs.Get().(*[]byte)
		defer o.bufs.Put(bp)
		buf = (*bp)[lo:hi]
		if a != lo {
			if err := o.readSlot(buf[:sumSize], v, s, lo, old[:1]); err != nil {
				return err
			}
		}
		if last := hi - sumSize; a+n != hi && (last != lo || a == lo) {
			if err := o.readSlot(buf[last-lo:], v, s, last, old[len(old)-1:]); err != nil {
				return err
			}
		}
		if data == nil {
			clear(buf[a-lo : a-lo+n])
		} else {
			copy(buf[a-lo:], data)
		}
	}
	var small sumsBuf
	sums := small.get((hi - lo) / sumSize)
	sumGranules(sums, buf)
	if _, err := o.f.WriteAt(buf, o.slotOffset(s)+int64(lo)); err != nil {
		return fmt.Errorf("overlay %s: writing slot %d: %w", o.path, s, err)
	}
	o.mu.Lock()
	o.setSums(s, lo/sumSize, sums)
	o.mu.Unlock()
	o.dirty.Store(true)
	return nil
}
