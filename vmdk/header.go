package vmdk

import (
	"encoding/binary"
	"fmt"
)

// Sparse extent header layout (VMware "Virtual Disk Format 5.0").
const (
	sparseMagic       = 0x564d444b // "KDMV"
	sectorSize        = 512
	headerSize        = 512
	flagRedundantGT   = 1 << 1
	flagZeroedGTE     = 1 << 2
	flagCompressed    = 1 << 16
	flagMarkers       = 1 << 17
	compressNone      = 0
	compressDeflate   = 1
	gdAtEnd           = 0xffffffffffffffff
	maxGrainSectors   = 4096    // 2 MiB; larger grains are refused
	maxGTEsPerGT      = 512     // as QEMU, which refuses more
	maxCapacity       = 1 << 37 // sectors: 64 TiB
	maxDescriptorSize = 1 << 20
	// gteZeroed marks a grain that reads as zeros (with flagZeroedGTE).
	gteZeroed = 1
	// Stream markers (streamOptimized).
	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3
)

// Sniff reports whether header (the first bytes of a file) is a VMDK: a
// sparse extent header, or a text descriptor.
func Sniff(header []byte) bool {
	if len(header) >= 4 && binary.LittleEndian.Uint32(header) == sparseMagic {
		return true
	}
	return len(header) >= 20 && string(header[:20]) == "# Disk DescriptorFil"
}

// sparseHeader is a sparse extent's header, with the specification's
// names (sizes and offsets in sectors).
type sparseHeader struct {
	MagicNumber       uint32
	Version           uint32
	Flags             uint32
	Capacity          uint64
	GrainSize         uint64
	DescriptorOffset  uint64
	DescriptorSize    uint64
	NumGTEsPerGT      uint32
	RgdOffset         uint64
	GdOffset          uint64
	OverHead          uint64
	UncleanShutdown   uint8
	CompressAlgorithm uint16
}

func decodeSparseHeader(b []byte) sparseHeader {
	le := binary.LittleEndian
	return sparseHeader{
		MagicNumber:       le.Uint32(b[0:]),
		Version:           le.Uint32(b[4:]),
		Flags:             le.Uint32(b[8:]),
		Capacity:          le.Uint64(b[12:]),
		GrainSize:         le.Uint64(b[20:]),
		DescriptorOffset:  le.Uint64(b[28:]),
		DescriptorSize:    le.Uint64(b[36:]),
		NumGTEsPerGT:      le.Uint32(b[44:]),
		RgdOffset:         le.Uint64(b[48:]),
		GdOffset:          le.Uint64(b[56:]),
		OverHead:          le.Uint64(b[64:]),
		UncleanShutdown:   b[72],
		CompressAlgorithm: le.Uint16(b[77:]),
	}
}

// check validates the fields a reader relies on.
func (h *sparseHeader) check(name string) error {
	bad := func(off int64, what string, v any, err error) error {
		return &FormatError{File: name, Offset: off, What: what, Value: v, Err: err}
	}
	switch {
	case h.MagicNumber != sparseMagic:
		return bad(0, "sparse extent magic", fmt.Sprintf("0x%x", h.MagicNumber), ErrNotVMDK)
	case h.Version < 1 || h.Version > 3:
		return bad(4, "version", h.Version, ErrUnsupported)
	case h.GrainSize == 0 || h.GrainSize > maxGrainSectors || h.GrainSize&(h.GrainSize-1) != 0:
		return bad(20, "grainSize (sectors)", h.GrainSize, ErrCorrupt)
	case h.Capacity > maxCapacity:
		return bad(12, "capacity (sectors)", h.Capacity, ErrCorrupt)
	case h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > maxGTEsPerGT:
		return bad(44, "numGTEsPerGT", h.NumGTEsPerGT, ErrCorrupt)
	case h.Flags&flagCompressed != 0 && h.CompressAlgorithm != compressDeflate:
		return bad(77, "compressAlgorithm", h.CompressAlgorithm, ErrUnsupported)
	case h.Flags&flagCompressed == 0 && h.CompressAlgorithm != compressNone:
		return bad(77, "compressAlgorithm without the compressed flag", h.CompressAlgorithm, ErrCorrupt)
	case h.DescriptorSize > maxDescriptorSize/sectorSize:
		return bad(36, "descriptorSize (sectors)", h.DescriptorSize, ErrCorrupt)
	}
	return nil
}
