package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Magic is the first four bytes of every qcow2 file ("QFI\xfb").
var Magic = []byte{'Q', 'F', 'I', 0xfb}

// Sniff reports whether header (the first bytes of a file) is qcow2.
func Sniff(header []byte) bool { return bytes.HasPrefix(header, Magic) }

// Header sizes and field limits, from the qcow2 specification
// (docs/interop/qcow2.txt in QEMU).
const (
	headerV2Size   = 72
	headerV3Size   = 104
	minClusterBits = 9
	maxClusterBits = 21
	maxBackingName = 1023
	// maxSize bounds the logical size the way QEMU does (QCOW_MAX_L1_SIZE
	// and 2^56 host offsets); larger is corrupt.
	maxSize = 1 << 56
)

// Incompatible feature bits (header version 3).
const (
	incompatDirty        = 1 << 0
	incompatCorrupt      = 1 << 1
	incompatExternalData = 1 << 2
	incompatCompression  = 1 << 3
	incompatExtendedL2   = 1 << 4
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extExternalData  = 0x44415441
)

// header is the qcow2 header with the specification's field names.
type header struct {
	Magic                 uint32
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	// Version 3 only.
	IncompatibleFeatures uint64
	CompatibleFeatures   uint64
	AutoclearFeatures    uint64
	RefcountOrder        uint32
	HeaderLength         uint32
	CompressionType      uint8
}

// parseHeader decodes and checks the header and its extensions from the
// file's first cluster-or-less (b); name is for errors.
func parseHeader(b []byte, name string, fileSize int64) (*header, string, error) {
	bad := func(off int64, what string, v any, err error) error {
		return &FormatError{File: name, Offset: off, What: what, Value: v, Err: err}
	}
	if len(b) < headerV2Size || !Sniff(b) {
		return nil, "", bad(0, "magic", nil, ErrNotQcow2)
	}
	be := binary.BigEndian
	h := &header{
		Magic:                 be.Uint32(b[0:]),
		Version:               be.Uint32(b[4:]),
		BackingFileOffset:     be.Uint64(b[8:]),
		BackingFileSize:       be.Uint32(b[16:]),
		ClusterBits:           be.Uint32(b[20:]),
		Size:                  be.Uint64(b[24:]),
		CryptMethod:           be.Uint32(b[32:]),
		L1Size:                be.Uint32(b[36:]),
		L1TableOffset:         be.Uint64(b[40:]),
		RefcountTableOffset:   be.Uint64(b[48:]),
		RefcountTableClusters: be.Uint32(b[56:]),
		NbSnapshots:           be.Uint32(b[60:]),
		SnapshotsOffset:       be.Uint64(b[64:]),
		HeaderLength:          headerV2Size,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(b) < headerV3Size {
			return nil, "", bad(0, "version 3 header", len(b), ErrCorrupt)
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.CompatibleFeatures = be.Uint64(b[80:])
		h.AutoclearFeatures = be.Uint64(b[88:])
		h.RefcountOrder = be.Uint32(b[96:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength < headerV3Size || int(h.HeaderLength) > len(b) || h.HeaderLength%8 != 0 {
			return nil, "", bad(100, "header_length", h.HeaderLength, ErrCorrupt)
		}
		if h.HeaderLength > headerV3Size {
			h.CompressionType = b[104]
		}
	default:
		return nil, "", bad(4, "version", h.Version, ErrUnsupported)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, "", bad(20, "cluster_bits", h.ClusterBits, ErrCorrupt)
	}
	if h.Size > maxSize {
		return nil, "", bad(24, "size", h.Size, ErrCorrupt)
	}
	if h.CryptMethod != 0 {
		return nil, "", bad(32, "crypt_method (encrypted images are refused)", h.CryptMethod, ErrUnsupported)
	}
	if f := h.IncompatibleFeatures; f != 0 {
		switch {
		case f&incompatExternalData != 0:
			return nil, "", bad(72, "incompatible_features: external data file (refused)", f, ErrUnsupported)
		case f&incompatExtendedL2 != 0:
			return nil, "", bad(72, "incompatible_features: extended L2 entries (refused)", f, ErrUnsupported)
		case f&^(incompatDirty|incompatCorrupt|incompatCompression) != 0:
			return nil, "", bad(72, "incompatible_features: unknown bits", fmt.Sprintf("0x%x", f), ErrUnsupported)
		}
	}
	if h.CompressionType != 0 {
		return nil, "", bad(104, "compression_type (only deflate is read)", h.CompressionType, ErrUnsupported)
	}
	cs := uint64(1) << h.ClusterBits
	// Every L2 table maps cs/8 clusters; L1 must cover the whole disk.
	perL1 := cs * (cs / 8)
	need := (h.Size + perL1 - 1) / perL1
	if uint64(h.L1Size) < need {
		return nil, "", bad(36, "l1_size too small for the disk size", h.L1Size, ErrCorrupt)
	}
	if h.L1TableOffset%cs != 0 || h.L1TableOffset == 0 && need > 0 ||
		h.L1TableOffset > uint64(fileSize) || uint64(h.L1Size)*8 > uint64(fileSize)-h.L1TableOffset {
		return nil, "", bad(40, "l1_table_offset (table not inside the file)", h.L1TableOffset, ErrCorrupt)
	}

	// Header extensions follow the header, up to the end of the first
	// cluster (or the backing file name, which sits there too).
	backingFormat := ""
	end := cs
	if end > uint64(len(b)) {
		end = uint64(len(b))
	}
	pos := uint64(h.HeaderLength)
	for {
		if pos+8 > end {
			return nil, "", bad(int64(pos), "header extension list runs past the first cluster", nil, ErrCorrupt)
		}
		typ, l := be.Uint32(b[pos:]), uint64(be.Uint32(b[pos+4:]))
		if typ == extEnd {
			break
		}
		data := pos + 8
		if l > end-data {
			return nil, "", bad(int64(pos), "header extension length", l, ErrCorrupt)
		}
		switch typ {
		case extBackingFormat:
			backingFormat = string(b[data : data+l])
		case extExternalData:
			return nil, "", bad(int64(pos), "external data file extension (refused)", string(b[data:data+l]), ErrUnsupported)
		}
		pos = data + (l+7)&^7
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize == 0 || h.BackingFileSize > maxBackingName ||
			h.BackingFileOffset > cs || h.BackingFileOffset > uint64(len(b)) ||
			uint64(h.BackingFileSize) > uint64(len(b))-h.BackingFileOffset {
			return nil, "", bad(8, "backing file name", fmt.Sprintf("offset %d size %d", h.BackingFileOffset, h.BackingFileSize), ErrCorrupt)
		}
	}
	return h, backingFormat, nil
}
