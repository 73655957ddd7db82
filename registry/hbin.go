package registry

import (
	"encoding/binary"
	"sort"
)

// Hive bin ("hbin") header layout, offsets from the start of the bin.
const (
	hbinSignatureOffset = 0
	hbinOffsetOffset    = 4 // the bin's own offset relative to the first bin
	hbinSizeOffset      = 8
	hbinTimestampOffset = 20
	hbinHeaderSize      = 32

	// hbinAlignment is the unit of bin sizes and of the hive bins data size.
	hbinAlignment = 4096
)

var hbinSignature = [4]byte{'h', 'b', 'i', 'n'}

// hbin is one decoded bin; offsets are relative to the first bin.
type hbin struct {
	offset uint32
	size   uint32
}

func (b hbin) end() uint32 { return b.offset + b.size }

// cellsStart is the offset of the first cell in the bin.
func (b hbin) cellsStart() uint32 { return b.offset + hbinHeaderSize }

// parseBins validates every bin header in bins (the bytes after the base
// block) and returns the bins in file order.
func parseBins(bins []byte) ([]hbin, error) {
	var out []hbin
	for off := 0; off < len(bins); {
		abs := int64(BaseBlockSize + off)
		if len(bins)-off < hbinHeaderSize {
			return nil, formatErr(abs, "hbin", len(bins)-off, "truncated bin header")
		}
		h := bins[off:]
		if [4]byte(h[hbinSignatureOffset:hbinSignatureOffset+4]) != hbinSignature {
			return nil, formatErr(abs, "hbin", string(h[:4]), "bad signature, want %q", "hbin")
		}
		self := binary.LittleEndian.Uint32(h[hbinOffsetOffset:])
		if self != uint32(off) {
			return nil, formatErr(abs+hbinOffsetOffset, "hbin", self, "offset field does not match the bin's position 0x%x", off)
		}
		size := binary.LittleEndian.Uint32(h[hbinSizeOffset:])
		if size == 0 || size%hbinAlignment != 0 {
			return nil, formatErr(abs+hbinSizeOffset, "hbin", size, "size is not a positive multiple of %d", hbinAlignment)
		}
		if uint64(size) > uint64(len(bins)-off) {
			return nil, formatErr(abs+hbinSizeOffset, "hbin", size, "bin extends past the hive bins data size")
		}
		out = append(out, hbin{offset: uint32(off), size: size})
		off += int(size)
	}
	return out, nil
}

// binAt returns the bin containing the relative offset off.
func (h *Hive) binAt(off uint32) (hbin, bool) {
	i := sort.Search(len(h.bins), func(i int) bool { return h.bins[i].end() > off })
	if i == len(h.bins) || off < h.bins[i].offset {
		return hbin{}, false
	}
	return h.bins[i], true
}

// binsExtent is how many bytes of valid, consecutive hive bins follow the
// base block in data: the hive bins data size a reader can trust when the
// base block's own is not (its checksum is wrong).
func binsExtent(data []byte) uint32 {
	if len(data) <= BaseBlockSize {
		return 0
	}
	bins := data[BaseBlockSize:]
	off := 0
	for len(bins)-off >= hbinHeaderSize && off < maxHiveBinsDataSize {
		h := bins[off:]
		size := binary.LittleEndian.Uint32(h[hbinSizeOffset:])
		if [4]byte(h[hbinSignatureOffset:hbinSignatureOffset+4]) != hbinSignature ||
			binary.LittleEndian.Uint32(h[hbinOffsetOffset:]) != uint32(off) ||
			size == 0 || size%hbinAlignment != 0 || uint64(size) > uint64(len(bins)-off) {
			break
		}
		off += int(size)
	}
	return uint32(off)
}
