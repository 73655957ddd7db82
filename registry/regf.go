package registry

import (
	"encoding/binary"
	"time"
	"unicode/utf16"
)

// Base block ("regf") layout: field offsets from the start of the file, named
// after the format specification.
const (
	BaseBlockSize = 4096 // the base block occupies the first 4 KiB of a hive file

	regfSignatureOffset         = 0
	regfPrimarySequenceOffset   = 4
	regfSecondarySequenceOffset = 8
	regfLastWrittenOffset       = 12
	regfMajorVersionOffset      = 20
	regfMinorVersionOffset      = 24
	regfFileTypeOffset          = 28
	regfFileFormatOffset        = 32
	regfRootCellOffset          = 36
	regfHiveBinsDataSizeOffset  = 40
	regfClusteringFactorOffset  = 44
	regfFileNameOffset          = 48
	regfFileNameSize            = 64
	regfChecksumOffset          = 508
	regfBootTypeOffset          = 4088
	regfBootRecoverOffset       = 4092

	// regfChecksummedDwords is how many leading dwords the checksum covers (bytes 0..507).
	regfChecksummedDwords = regfChecksumOffset / 4

	regfMajorVersion    = 1
	regfMinMinorVersion = 3 // Windows NT 4.0 and later
	regfMaxMinorVersion = 6 // Windows 10
)

var regfSignature = [4]byte{'r', 'e', 'g', 'f'}

// File types stored in the base block.
const (
	FileTypePrimary  = 0 // a primary hive file
	FileTypeLog      = 1 // an old-format transaction log
	FileTypeLogNew   = 6 // a new-format (Windows 8.1+) transaction log
	FileFormatMemory = 1 // "direct memory load", the only format in use
)

// Minor versions that change the on-disk format.
const (
	MinorVersionBigData = 4 // hives of version 1.4 and later may store values > 16344 bytes in db cells
)

// BaseBlock is the decoded "regf" header of a hive or log file.
type BaseBlock struct {
	PrimarySequence   uint32
	SecondarySequence uint32
	LastWritten       time.Time
	MajorVersion      uint32
	MinorVersion      uint32
	FileType          uint32
	FileFormat        uint32
	RootCellOffset    uint32 // relative to the first hbin
	HiveBinsDataSize  uint32 // bytes of hbins following the base block
	ClusteringFactor  uint32
	FileName          string // the tail of the hive's path, as recorded by Windows
	Checksum          uint32 // as stored
	BootType          uint32
	BootRecover       uint32

	raw [BaseBlockSize]byte // the block as read, so serializing keeps fields kvmify does not model
}

// ParseBaseBlock decodes the first 4096 bytes of b as a base block. A checksum
// mismatch is not an error here (log recovery must read such blocks); use
// ChecksumValid.
func ParseBaseBlock(b []byte) (*BaseBlock, error) {
	bb, err := decodeBaseBlock(b)
	if err != nil {
		return nil, err
	}
	if bb.MajorVersion != regfMajorVersion {
		return nil, formatErr(regfMajorVersionOffset, "base block", bb.MajorVersion, "unsupported major version")
	}
	if bb.MinorVersion < regfMinMinorVersion || bb.MinorVersion > regfMaxMinorVersion {
		return nil, formatErr(regfMinorVersionOffset, "base block", bb.MinorVersion, "unsupported minor version (want %d..%d)", regfMinMinorVersion, regfMaxMinorVersion)
	}
	return bb, nil
}

// decodeBaseBlock decodes the fields of a base block that has the size and
// signature of one, without judging their values: recovery must read a
// corrupt primary base block far enough to know it is corrupt.
func decodeBaseBlock(b []byte) (*BaseBlock, error) {
	if len(b) < BaseBlockSize {
		return nil, formatErr(0, "base block", len(b), "truncated: need %d bytes", BaseBlockSize)
	}
	if [4]byte(b[regfSignatureOffset:regfSignatureOffset+4]) != regfSignature {
		return nil, formatErr(regfSignatureOffset, "base block", string(b[:4]), "bad signature, want %q", "regf")
	}
	le := binary.LittleEndian
	bb := &BaseBlock{
		PrimarySequence:   le.Uint32(b[regfPrimarySequenceOffset:]),
		SecondarySequence: le.Uint32(b[regfSecondarySequenceOffset:]),
		LastWritten:       filetimeToTime(le.Uint64(b[regfLastWrittenOffset:])),
		MajorVersion:      le.Uint32(b[regfMajorVersionOffset:]),
		MinorVersion:      le.Uint32(b[regfMinorVersionOffset:]),
		FileType:          le.Uint32(b[regfFileTypeOffset:]),
		FileFormat:        le.Uint32(b[regfFileFormatOffset:]),
		RootCellOffset:    le.Uint32(b[regfRootCellOffset:]),
		HiveBinsDataSize:  le.Uint32(b[regfHiveBinsDataSizeOffset:]),
		ClusteringFactor:  le.Uint32(b[regfClusteringFactorOffset:]),
		FileName:          decodeUTF16Z(b[regfFileNameOffset : regfFileNameOffset+regfFileNameSize]),
		Checksum:          le.Uint32(b[regfChecksumOffset:]),
		BootType:          le.Uint32(b[regfBootTypeOffset:]),
		BootRecover:       le.Uint32(b[regfBootRecoverOffset:]),
	}
	copy(bb.raw[:], b[:BaseBlockSize])
	return bb, nil
}

// Dirty reports whether the last write to the hive was not completed (the two
// sequence numbers differ).
func (bb *BaseBlock) Dirty() bool { return bb.PrimarySequence != bb.SecondarySequence }

// ChecksumValid reports whether the stored checksum matches the block as read.
func (bb *BaseBlock) ChecksumValid() bool { return BaseBlockChecksum(bb.raw[:]) == bb.Checksum }

// Bytes returns the 4096-byte block with the current field values and a
// freshly computed checksum; bytes kvmify does not model are kept as read.
func (bb *BaseBlock) Bytes() []byte {
	out := make([]byte, BaseBlockSize)
	copy(out, bb.raw[:])
	bb.Encode(out)
	return out
}

// Encode writes the modeled fields into dst[:4096] (leaving other bytes of dst
// untouched), recomputes the checksum and stores it in both dst and bb.
// It panics if dst is shorter than BaseBlockSize, a programming error.
func (bb *BaseBlock) Encode(dst []byte) {
	_ = dst[BaseBlockSize-1]
	le := binary.LittleEndian
	copy(dst[regfSignatureOffset:], regfSignature[:])
	le.PutUint32(dst[regfPrimarySequenceOffset:], bb.PrimarySequence)
	le.PutUint32(dst[regfSecondarySequenceOffset:], bb.SecondarySequence)
	le.PutUint64(dst[regfLastWrittenOffset:], timeToFiletime(bb.LastWritten))
	le.PutUint32(dst[regfMajorVersionOffset:], bb.MajorVersion)
	le.PutUint32(dst[regfMinorVersionOffset:], bb.MinorVersion)
	le.PutUint32(dst[regfFileTypeOffset:], bb.FileType)
	le.PutUint32(dst[regfFileFormatOffset:], bb.FileFormat)
	le.PutUint32(dst[regfRootCellOffset:], bb.RootCellOffset)
	le.PutUint32(dst[regfHiveBinsDataSizeOffset:], bb.HiveBinsDataSize)
	le.PutUint32(dst[regfClusteringFactorOffset:], bb.ClusteringFactor)
	name := dst[regfFileNameOffset : regfFileNameOffset+regfFileNameSize]
	if fileNameChanged(bb) {
		clear(name)
		u := utf16.Encode([]rune(bb.FileName))
		for i := 0; i < len(u) && 2*i+1 < len(name); i++ {
			le.PutUint16(name[2*i:], u[i])
		}
	} else {
		copy(name, bb.raw[regfFileNameOffset:regfFileNameOffset+regfFileNameSize])
	}
	le.PutUint32(dst[regfBootTypeOffset:], bb.BootType)
	le.PutUint32(dst[regfBootRecoverOffset:], bb.BootRecover)
	bb.Checksum = BaseBlockChecksum(dst)
	le.PutUint32(dst[regfChecksumOffset:], bb.Checksum)
	copy(bb.raw[:], dst[:BaseBlockSize])
}

// fileNameChanged keeps the recorded name byte-exact (including bytes after
// its terminator) unless the caller changed it.
func fileNameChanged(bb *BaseBlock) bool {
	return decodeUTF16Z(bb.raw[regfFileNameOffset:regfFileNameOffset+regfFileNameSize]) != bb.FileName
}

// BaseBlockChecksum computes the base block checksum of b[:508]: the XOR of
// the first 127 little-endian dwords, with 0 stored as 1 and 0xFFFFFFFF as
// 0xFFFFFFFE (Windows reserves those two values).
func BaseBlockChecksum(b []byte) uint32 {
	var sum uint32
	for i := 0; i < regfChecksummedDwords; i++ {
		sum ^= binary.LittleEndian.Uint32(b[4*i:])
	}
	switch sum {
	case 0xFFFFFFFF:
		return 0xFFFFFFFE
	case 0:
		return 1
	}
	return sum
}

// filetimeEpochDelta is the number of seconds from 1601-01-01 (the FILETIME
// epoch) to 1970-01-01.
const (
	filetimeEpochDelta   = 11644473600
	filetimeTicksPerSec  = 10000000
	filetimeNanosPerTick = 100
)

func filetimeToTime(ft uint64) time.Time {
	secs := int64(ft/filetimeTicksPerSec) - filetimeEpochDelta
	nsec := int64(ft%filetimeTicksPerSec) * filetimeNanosPerTick
	return time.Unix(secs, nsec).UTC()
}

func timeToFiletime(t time.Time) uint64 {
	return uint64(t.Unix()+filetimeEpochDelta)*filetimeTicksPerSec + uint64(t.Nanosecond()/filetimeNanosPerTick)
}

// decodeUTF16Z decodes UTF-16LE up to the first NUL unit (or the end).
func decodeUTF16Z(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
