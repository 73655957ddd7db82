package ntfs

import "unicode/utf16"

// $FILE_NAME value layout (also the key of $I30 index entries).
const (
	fnParentOff        = 0
	fnAllocatedSizeOff = 40
	fnDataSizeOff      = 48
	fnAttributesOff    = 56
	fnNameLengthOff    = 64
	fnNamespaceOff     = 65
	fnNameOff          = 66
)

// Name namespaces.
const (
	NamespacePOSIX    = 0
	NamespaceWin32    = 1
	NamespaceDOS      = 2
	NamespaceWin32DOS = 3
)

// File attribute bits of $FILE_NAME and $STANDARD_INFORMATION.
const (
	FileAttrReadOnly   = 0x0001
	FileAttrHidden     = 0x0002
	FileAttrSystem     = 0x0004
	FileAttrDirectory  = 0x10000000 // FILE_NAME_INDEX_PRESENT
	FileAttrSparse     = 0x0200
	FileAttrReparse    = 0x0400
	FileAttrCompressed = 0x0800
	FileAttrEncrypted  = 0x4000
)

// FileName is a decoded $FILE_NAME value.
type FileName struct {
	Parent        uint64 // parent directory's record number
	ParentSeq     uint16
	AllocatedSize int64
	DataSize      int64
	Attributes    uint32
	Namespace     uint8
	Name          string
	name16        []uint16
}

func parseFileName(b []byte, off int64) (FileName, error) {
	if len(b) < fnNameOff {
		return FileName{}, formatErr(off, "$FILE_NAME", ErrBadAttribute, len(b), "value too short")
	}
	nl := int(b[fnNameLengthOff])
	if fnNameOff+2*nl > len(b) {
		return FileName{}, formatErr(off+fnNameLengthOff, "$FILE_NAME", ErrBadAttribute, nl, "name runs past the value")
	}
	fn := FileName{
		Parent:        le64(b[fnParentOff:]) & mftRefRecordMask,
		ParentSeq:     uint16(le64(b[fnParentOff:]) >> 48),
		AllocatedSize: int64(le64(b[fnAllocatedSizeOff:])),
		DataSize:      int64(le64(b[fnDataSizeOff:])),
		Attributes:    le32(b[fnAttributesOff:]),
		Namespace:     b[fnNamespaceOff],
		name16:        make([]uint16, nl),
	}
	for i := range fn.name16 {
		fn.name16[i] = le16(b[fnNameOff+2*i:])
	}
	fn.Name = string(utf16.Decode(fn.name16))
	return fn, nil
}
