package ntfs

import (
	"fmt"
	"unicode/utf16"
)

// AttrType is an NTFS attribute type code.
type AttrType uint32

// Attribute types used by kvmify.
const (
	AttrStandardInformation AttrType = 0x10
	AttrAttributeList       AttrType = 0x20
	AttrFileName            AttrType = 0x30
	AttrObjectID            AttrType = 0x40
	AttrSecurityDescriptor  AttrType = 0x50
	AttrVolumeName          AttrType = 0x60
	AttrVolumeInformation   AttrType = 0x70
	AttrData                AttrType = 0x80
	AttrIndexRoot           AttrType = 0x90
	AttrIndexAllocation     AttrType = 0xa0
	AttrBitmap              AttrType = 0xb0
	AttrReparsePoint        AttrType = 0xc0
	AttrEAInformation       AttrType = 0xd0
	AttrEA                  AttrType = 0xe0
	AttrLoggedUtilityStream AttrType = 0x100
	attrEnd                 AttrType = 0xffffffff
)

var attrNames = map[AttrType]string{
	AttrStandardInformation: "$STANDARD_INFORMATION", AttrAttributeList: "$ATTRIBUTE_LIST",
	AttrFileName: "$FILE_NAME", AttrObjectID: "$OBJECT_ID", AttrSecurityDescriptor: "$SECURITY_DESCRIPTOR",
	AttrVolumeName: "$VOLUME_NAME", AttrVolumeInformation: "$VOLUME_INFORMATION", AttrData: "$DATA",
	AttrIndexRoot: "$INDEX_ROOT", AttrIndexAllocation: "$INDEX_ALLOCATION", AttrBitmap: "$BITMAP",
	AttrReparsePoint: "$REPARSE_POINT", AttrEAInformation: "$EA_INFORMATION", AttrEA: "$EA",
	AttrLoggedUtilityStream: "$LOGGED_UTILITY_STREAM",
}

func (t AttrType) String() string {
	if s, ok := attrNames[t]; ok {
		return s
	}
	return fmt.Sprintf("AttrType(0x%x)", uint32(t))
}

// Attribute record header layout.
const (
	attrTypeOff            = 0
	attrLengthOff          = 4
	attrNonResidentOff     = 8
	attrNameLengthOff      = 9
	attrNameOffsetOff      = 10
	attrFlagsOff           = 12
	attrIDOff              = 14
	attrValueLengthOff     = 16
	attrValueOffsetOff     = 20
	attrResidentHeaderSize = 24
	attrLowestVCNOff       = 16
	attrHighestVCNOff      = 24
	attrMappingPairsOff    = 32
	attrCompressionUnitOff = 34
	attrAllocatedSizeOff   = 40
	attrDataSizeOff        = 48
	attrInitSizeOff        = 56
	attrNonResHeaderSize   = 64
)

// Attribute flags.
const (
	AttrFlagCompressed = 0x0001
	AttrFlagEncrypted  = 0x4000
	AttrFlagSparse     = 0x8000
	attrCompressionMsk = 0x00ff
)

// Attr is one attribute record as found in an MFT record. RecordOffset is
// its position inside the (fixed-up) record bytes, so planners can patch
// sizes and runlists in place.
type Attr struct {
	Type        AttrType
	Name        string
	NonResident bool
	Flags       uint16
	ID          uint16
	// Record is the MFT record number holding this attribute, and
	// RecordOffset its byte offset inside that record; Length its length.
	Record       uint64
	RecordOffset int
	Length       int

	// Resident attributes: the value.
	Value []byte

	// Non-resident attributes.
	LowestVCN, HighestVCN int64
	CompressionUnit       int
	AllocatedSize         int64
	DataSize              int64
	InitializedSize       int64
	// RunlistOffset is the mapping pairs' offset inside the record.
	RunlistOffset int
	Runs          []Run
}

// parseAttr decodes the attribute at b[pos:] within a record of number rec
// stored at absolute offset recOff.
func (v *Volume) parseAttr(b []byte, pos int, rec uint64, recOff int64) (*Attr, int, error) {
	where := recOff + int64(pos)
	if pos+attrResidentHeaderSize > len(b) {
		if pos+4 <= len(b) && AttrType(le32(b[pos:])) == attrEnd {
			return nil, 0, nil
		}
		return nil, 0, formatErr(where, "attribute header", ErrBadAttribute, pos, "attribute header runs past the record's bytes in use")
	}
	t := AttrType(le32(b[pos+attrTypeOff:]))
	if t == attrEnd {
		return nil, 0, nil
	}
	length := int(le32(b[pos+attrLengthOff:]))
	if length < attrResidentHeaderSize || length%8 != 0 || pos+length > len(b) {
		return nil, 0, formatErr(where+attrLengthOff, "attribute header", ErrBadAttribute, length, "attribute length out of range (record %d)", rec)
	}
	a := &Attr{
		Type:         t,
		NonResident:  b[pos+attrNonResidentOff] != 0,
		Flags:        le16(b[pos+attrFlagsOff:]),
		ID:           le16(b[pos+attrIDOff:]),
		Record:       rec,
		RecordOffset: pos,
		Length:       length,
	}
	ab := b[pos : pos+length]
	if nl := int(ab[attrNameLengthOff]); nl > 0 {
		no := int(le16(ab[attrNameOffsetOff:]))
		if no+2*nl > length {
			return nil, 0, formatErr(where+attrNameOffsetOff, "attribute header", ErrBadAttribute, no, "attribute name outside the attribute")
		}
		a.Name = utf16String(ab[no : no+2*nl])
	}
	if !a.NonResident {
		vl := int(le32(ab[attrValueLengthOff:]))
		vo := int(le16(ab[attrValueOffsetOff:]))
		if vo+vl > length || vl < 0 {
			return nil, 0, formatErr(where+attrValueLengthOff, "attribute header", ErrBadAttribute, vl, "resident value outside the attribute")
		}
		a.Value = ab[vo : vo+vl]
		a.DataSize, a.InitializedSize, a.AllocatedSize = int64(vl), int64(vl), int64(vl)
		return a, length, nil
	}
	if length < attrNonResHeaderSize {
		return nil, 0, formatErr(where+attrLengthOff, "attribute header", ErrBadAttribute, length, "non-resident attribute too short")
	}
	a.LowestVCN = int64(le64(ab[attrLowestVCNOff:]))
	a.HighestVCN = int64(le64(ab[attrHighestVCNOff:]))
	a.CompressionUnit = int(le16(ab[attrCompressionUnitOff:]))
	a.AllocatedSize = int64(le64(ab[attrAllocatedSizeOff:]))
	a.DataSize = int64(le64(ab[attrDataSizeOff:]))
	a.InitializedSize = int64(le64(ab[attrInitSizeOff:]))
	if a.LowestVCN < 0 || a.HighestVCN < a.LowestVCN-1 || a.HighestVCN >= v.clusters {
		return nil, 0, formatErr(where+attrLowestVCNOff, "attribute header", ErrBadAttribute, a.LowestVCN, "VCN range %d..%d out of range", a.LowestVCN, a.HighestVCN)
	}
	if a.LowestVCN == 0 && (a.DataSize < 0 || a.InitializedSize < 0 || a.AllocatedSize < 0 ||
		a.InitializedSize > a.DataSize || a.AllocatedSize > v.clusters*v.ClusterSize) {
		return nil, 0, formatErr(where+attrDataSizeOff, "attribute header", ErrBadAttribute, a.DataSize, "inconsistent sizes (allocated %d, data %d, initialized %d)", a.AllocatedSize, a.DataSize, a.InitializedSize)
	}
	if a.CompressionUnit > 16 {
		return nil, 0, formatErr(where+attrCompressionUnitOff, "attribute header", ErrBadAttribute, a.CompressionUnit, "compression unit too large")
	}
	a.RunlistOffset = pos + int(le16(ab[attrMappingPairsOff:]))
	if a.RunlistOffset < pos+attrAttrNonResMinRunlist || a.RunlistOffset > pos+length {
		return nil, 0, formatErr(where+attrMappingPairsOff, "attribute header", ErrBadAttribute, a.RunlistOffset-pos, "mapping pairs offset out of range")
	}
	runs, _, err := decodeRunlist(b[a.RunlistOffset:pos+length], a.LowestVCN, v.clusters, recOff+int64(a.RunlistOffset))
	if err != nil {
		return nil, 0, err
	}
	for i := range runs {
		runs[i].Offset += a.RunlistOffset
	}
	a.Runs = runs
	return a, length, nil
}

// attrAttrNonResMinRunlist is the smallest valid mapping pairs offset
// (right after the uncompressed non-resident header).
const attrAttrNonResMinRunlist = attrNonResHeaderSize

// Compressed, Encrypted and Sparse report the attribute's flags.
func (a *Attr) Compressed() bool { return a.Flags&attrCompressionMsk != 0 }

// Encrypted reports whether the attribute is EFS-encrypted.
func (a *Attr) Encrypted() bool { return a.Flags&AttrFlagEncrypted != 0 }

// Sparse reports whether the attribute is marked sparse.
func (a *Attr) Sparse() bool { return a.Flags&AttrFlagSparse != 0 }

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
