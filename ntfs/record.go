package ntfs

import (
	"bytes"
)

// FILE record header layout.
const (
	recSignature          = "FILE"
	recLSNOff             = 8
	recSequenceOff        = 16
	recLinkCountOff       = 18
	recFirstAttrOff       = 20
	recFlagsOff           = 22
	recBytesInUseOff      = 24
	recBytesAllocatedOff  = 28
	recBaseRecordOff      = 32
	recHeaderMin          = 42
	recFlagInUse          = 0x0001
	recFlagDirectory      = 0x0002
	mftRefRecordMask      = 0x0000ffffffffffff
	maxAttrsPerRecord     = 1024
	maxExtensionRecords   = 4096
	extentDiskOffsetError = -1
)

// Extent is a contiguous byte range on the volume.
type Extent struct {
	Offset, Length int64
}

// Record is one MFT record (FILE) after its fixups were applied.
type Record struct {
	Number     uint64
	Sequence   uint16
	LinkCount  uint16
	Flags      uint16
	BaseRecord uint64 // 0 for a base record
	BytesInUse int
	// Raw is the fixed-up record; Extents where its bytes live on the
	// volume (more than one when a record spans non-contiguous clusters).
	Raw     []byte
	Extents []Extent
	Attrs   []*Attr
}

// InUse reports whether the record is allocated.
func (r *Record) InUse() bool { return r.Flags&recFlagInUse != 0 }

// IsDirectory reports whether the record is a directory.
func (r *Record) IsDirectory() bool { return r.Flags&recFlagDirectory != 0 }

// ReadRecord reads and parses MFT record n (not following its attribute
// list).
func (v *Volume) ReadRecord(n uint64) (*Record, error) {
	if v.mft == nil {
		return nil, formatErr(0, "$MFT", ErrBadRecord, n, "MFT not loaded")
	}
	start := int64(n) * v.RecordSize
	if n > uint64(v.mft.dataSize/v.RecordSize) || start+v.RecordSize > v.mft.dataSize {
		return nil, formatErr(v.boot.MFTCluster*v.ClusterSize, "$MFT", ErrNotFound, n, "record %d beyond the MFT's %d bytes", n, v.mft.dataSize)
	}
	extents, err := v.mft.diskExtents(start, v.RecordSize)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, v.RecordSize)
	pos := int64(0)
	for _, e := range extents {
		if e.Offset < 0 {
			return nil, formatErr(v.boot.MFTCluster*v.ClusterSize, "$MFT", ErrBadRecord, n, "record %d lies in a sparse part of the MFT", n)
		}
		if err := v.readAt(raw[pos:pos+e.Length], e.Offset, "MFT record"); err != nil {
			return nil, err
		}
		pos += e.Length
	}
	return v.parseRecord(raw, n, extents)
}

// parseRecord validates and decodes a raw record.
func (v *Volume) parseRecord(raw []byte, n uint64, extents []Extent) (*Record, error) {
	off := int64(0)
	if len(extents) > 0 {
		off = extents[0].Offset
	}
	if len(raw) < recHeaderMin || !bytes.Equal(raw[:4], []byte(recSignature)) {
		sig := raw[:min(4, len(raw))]
		return nil, formatErr(off, "MFT record", ErrBadRecord, string(sig), "record %d has no FILE signature", n)
	}
	if err := applyFixups(raw, off, "MFT record"); err != nil {
		if fe, ok := err.(*FormatError); ok {
			fe.Msg = "record " + uitoa(n) + ": " + fe.Msg
		}
		return nil, err
	}
	r := &Record{
		Number:     n,
		Sequence:   le16(raw[recSequenceOff:]),
		LinkCount:  le16(raw[recLinkCountOff:]),
		Flags:      le16(raw[recFlagsOff:]),
		BaseRecord: le64(raw[recBaseRecordOff:]) & mftRefRecordMask,
		BytesInUse: int(le32(raw[recBytesInUseOff:])),
		Raw:        raw,
		Extents:    extents,
	}
	if r.BytesInUse > len(raw) || r.BytesInUse < recHeaderMin {
		return nil, formatErr(off+recBytesInUseOff, "MFT record", ErrBadRecord, r.BytesInUse, "record %d: bytes in use out of range", n)
	}
	pos := int(le16(raw[recFirstAttrOff:]))
	if pos < recHeaderMin || pos >= r.BytesInUse {
		return nil, formatErr(off+recFirstAttrOff, "MFT record", ErrBadRecord, pos, "record %d: first attribute offset out of range", n)
	}
	for {
		if len(r.Attrs) >= maxAttrsPerRecord {
			return nil, formatErr(off+int64(pos), "MFT record", ErrBadRecord, len(r.Attrs), "record %d: too many attributes", n)
		}
		a, length, err := v.parseAttr(raw[:r.BytesInUse], pos, n, off)
		if err != nil {
			return nil, err
		}
		if a == nil {
			break
		}
		r.Attrs = append(r.Attrs, a)
		pos += length
	}
	return r, nil
}

func uitoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// DiskOffset is the volume offset of the record's first byte, or -1 for a
// record parsed from memory.
func (r *Record) DiskOffset() int64 {
	if len(r.Extents) == 0 {
		return -1
	}
	return r.Extents[0].Offset
}
