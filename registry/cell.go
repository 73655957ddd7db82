package registry

import "encoding/binary"

// Cell layout: a signed 32-bit size (negative when allocated) followed by the
// cell's data; sizes are multiples of cellAlignment.
const (
	cellSizeFieldSize = 4
	cellAlignment     = 8
	// noCell is the offset stored where a reference is absent.
	noCell = 0xFFFFFFFF
)

// Cell record signatures.
var (
	sigNK = [2]byte{'n', 'k'}
	sigVK = [2]byte{'v', 'k'}
	sigSK = [2]byte{'s', 'k'}
	sigLF = [2]byte{'l', 'f'}
	sigLH = [2]byte{'l', 'h'}
	sigLI = [2]byte{'l', 'i'}
	sigRI = [2]byte{'r', 'i'}
	sigDB = [2]byte{'d', 'b'}
)

// abs converts a cell offset (relative to the first bin) into a file offset.
func abs(off uint32) int64 { return int64(BaseBlockSize) + int64(off) }

// cellHeader decodes the size field of the cell at off and checks that the
// cell lies within its bin; it returns the cell's total size and whether it
// is allocated.
func (h *Hive) cellHeader(off uint32, structure string) (size uint32, allocated bool, err error) {
	if off%cellAlignment != 0 {
		return 0, false, formatErr(abs(off), structure, off, "cell offset not %d-aligned", cellAlignment)
	}
	bin, ok := h.binAt(off)
	if !ok || off < bin.cellsStart() {
		return 0, false, formatErr(abs(off), structure, off, "cell offset outside the hive bins")
	}
	raw := int32(binary.LittleEndian.Uint32(h.hbins[off:]))
	switch {
	case raw < 0:
		size, allocated = uint32(-int64(raw)), true
	default:
		size = uint32(raw)
	}
	if size == 0 {
		return 0, false, formatErr(abs(off), structure, raw, "cell size is zero")
	}
	if size%cellAlignment != 0 {
		return 0, false, formatErr(abs(off), structure, raw, "cell size not a multiple of %d", cellAlignment)
	}
	if uint64(off)+uint64(size) > uint64(bin.end()) {
		return 0, false, formatErr(abs(off), structure, raw, "cell extends past the end of its bin at 0x%x", abs(bin.end()))
	}
	return size, allocated, nil
}

// cell returns the data of the allocated cell at off (without its size
// field).
func (h *Hive) cell(off uint32, structure string) ([]byte, error) {
	size, allocated, err := h.cellHeader(off, structure)
	if err != nil {
		return nil, err
	}
	if !allocated {
		return nil, formatErr(abs(off), structure, off, "reference to a free cell")
	}
	return h.hbins[off+cellSizeFieldSize : off+size], nil
}

// record returns the data of the allocated cell at off after checking that it
// holds at least minSize bytes and starts with sig.
func (h *Hive) record(off uint32, sig [2]byte, minSize int) ([]byte, error) {
	structure := string(sig[:])
	b, err := h.cell(off, structure)
	if err != nil {
		return nil, err
	}
	if len(b) < minSize {
		return nil, formatErr(abs(off), structure, len(b), "cell too small for a %s record (need %d bytes)", structure, minSize)
	}
	if [2]byte(b[:2]) != sig {
		return nil, formatErr(abs(off)+cellSizeFieldSize, structure, string(b[:2]), "expected a %s record", structure)
	}
	return b, nil
}
