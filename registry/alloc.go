package registry

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// minCellSize is the smallest cell the format allows: the size field plus
// one alignment unit, so a split never leaves a remainder Windows would reject.
const minCellSize = cellAlignment

// freeCell is one free cell of the hive being edited (cell offset and total
// size, size field included).
type freeCell struct {
	off, size uint32
}

// allocator hands out cells of an editor's buffer: first fit over the free
// cells (splitting larger ones), then a new hive bin placed in the file's
// slack after the last bin, and only then a new bin that grows the file.
type allocator struct {
	ed   *Editor
	free []freeCell // sorted by offset
}

// scanFree collects the free cells of every bin, checking that cells tile
// each bin exactly so that later splits and merges stay inside their bin.
func (a *allocator) scanFree() error {
	h := a.ed.h
	a.free = a.free[:0]
	for _, bin := range h.bins {
		for off := bin.cellsStart(); off < bin.end(); {
			raw := int32(binary.LittleEndian.Uint32(h.hbins[off:]))
			size := uint32(raw)
			if raw < 0 {
				size = uint32(-int64(raw))
			}
			if size == 0 || size%cellAlignment != 0 || uint64(off)+uint64(size) > uint64(bin.end()) {
				return formatErr(abs(off), "cell", raw, "cell size breaks the tiling of the bin at 0x%x", abs(bin.offset))
			}
			if raw > 0 {
				a.free = append(a.free, freeCell{off, size})
			}
			off += size
		}
	}
	return nil
}

// cellSizeFor is the total (aligned) cell size holding n data bytes.
func cellSizeFor(n int) uint32 {
	s := uint32(n) + cellSizeFieldSize
	s = (s + cellAlignment - 1) &^ (cellAlignment - 1)
	return max(s, minCellSize)
}

// alloc returns the offset of a new allocated cell with room for n data
// bytes; the data bytes are zeroed.
func (a *allocator) alloc(n int) (uint32, error) {
	if n < 0 || uint64(n) > maxCellData {
		return 0, fmt.Errorf("registry: cell of %d bytes is larger than kvmify allocates (%d)", n, maxCellData)
	}
	size := cellSizeFor(n)
	i := -1
	for j, f := range a.free {
		if f.size >= size {
			i = j
			break
		}
	}
	if i < 0 {
		if err := a.ed.appendBin(size); err != nil {
			return 0, err
		}
		i = len(a.free) - 1 // appendBin leaves its one free cell last
	}
	f := a.free[i]
	if rest := f.size - size; rest >= minCellSize {
		a.free[i] = freeCell{f.off + size, rest}
		a.ed.putCellSize(f.off+size, int32(rest))
	} else {
		size = f.size
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	a.ed.putCellSize(f.off, -int32(size))
	clear(a.ed.h.hbins[f.off+cellSizeFieldSize : f.off+size])
	return f.off, nil
}

// release frees the allocated cell at off, merging it with free neighbours
// in the same bin (a bin header always separates cells of different bins, so
// offset adjacency implies the same bin).
func (a *allocator) release(off uint32) error {
	size, allocated, err := a.ed.h.cellHeader(off, "cell")
	if err != nil {
		return err
	}
	if !allocated {
		return formatErr(abs(off), "cell", off, "freeing a cell that is already free")
	}
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].off > off })
	if i < len(a.free) && a.free[i].off == off+size {
		size += a.free[i].size
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].size == off {
		i--
		off = a.free[i].off
		size += a.free[i].size
		a.free[i].size = size
	} else {
		a.free = append(a.free, freeCell{})
		copy(a.free[i+1:], a.free[i:])
		a.free[i] = freeCell{off, size}
	}
	a.ed.putCellSize(off, int32(size))
	return nil
}

// maxCellData bounds one cell's data: values above it must use big data, and
// nothing else the editor writes comes close.
const maxCellData = 64 << 20

// appendBin adds a hive bin large enough for a cell of cellSize bytes after
// the last bin, inside the file's slack when it fits there, else growing the
// file; the bin's space becomes one free cell at the end of the free list.
func (e *Editor) appendBin(cellSize uint32) error {
	binSize := (cellSize + hbinHeaderSize + hbinAlignment - 1) &^ (hbinAlignment - 1)
	binsSize := uint64(e.base.HiveBinsDataSize)
	if binsSize+uint64(binSize) > maxHiveBinsSize {
		return fmt.Errorf("registry: hive would exceed %d bytes of hive bins", uint64(maxHiveBinsSize))
	}
	end := BaseBlockSize + binsSize + uint64(binSize)
	if end > uint64(len(e.buf)) {
		e.buf = append(e.buf, make([]byte, end-uint64(len(e.buf)))...)
	}
	off := uint32(binsSize)
	b := e.buf[BaseBlockSize+off:]
	le := binary.LittleEndian
	copy(b[hbinSignatureOffset:], hbinSignature[:])
	le.PutUint32(b[hbinOffsetOffset:], off)
	le.PutUint32(b[hbinSizeOffset:], binSize)
	clear(b[hbinSizeOffset+4 : hbinHeaderSize])
	e.base.HiveBinsDataSize = uint32(binsSize) + binSize
	e.bins = append(e.bins, hbin{offset: off, size: binSize})
	e.refresh()
	cells := off + hbinHeaderSize
	e.putCellSize(cells, int32(binSize-hbinHeaderSize))
	e.alloc.free = append(e.alloc.free, freeCell{cells, binSize - hbinHeaderSize})
	return nil
}

// maxHiveBinsSize keeps every cell offset well inside 31 bits (Windows caps a
// hive's stable storage at 2 GiB).
const maxHiveBinsSize = 1 << 31

// putCellSize writes a cell's size field (negative when allocated).
func (e *Editor) putCellSize(off uint32, size int32) {
	binary.LittleEndian.PutUint32(e.h.hbins[off:], uint32(size))
}
