// Package partition reads the partition table of a disk image: MBR (with
// extended and logical partitions), GPT (with CRC checks and the backup
// header as a fallback), or none at all when the image is a bare file
// system. It takes an io.ReaderAt plus a size and never writes.
package partition

import (
	"errors"
	"fmt"
	"io"
)

// Scheme names how a disk is partitioned.
type Scheme int

// Partitioning schemes.
const (
	SchemeNone Scheme = iota // a bare file system at offset 0
	SchemeMBR
	SchemeGPT
)

var schemeNames = [...]string{SchemeNone: "none", SchemeMBR: "mbr", SchemeGPT: "gpt"}

func (s Scheme) String() string {
	if int(s) < len(schemeNames) {
		return schemeNames[s]
	}
	return fmt.Sprintf("Scheme(%d)", int(s))
}

// Table is the decoded layout of a disk.
type Table struct {
	Scheme     Scheme
	SectorSize int64
	// Partitions are in Linux numbering order (primaries 1-4, logicals
	// from 5; GPT entries by slot).
	Partitions []Partition
	// Warnings report problems that were worked around, such as a corrupt
	// primary GPT header when the backup was used.
	Warnings []string
}

// Partition is one partition of a Table.
type Partition struct {
	// Index is the 1-based number Linux gives the partition (sda<Index>).
	Index int
	// Start and Size are in bytes from the start of the disk.
	Start, Size int64
	// MBRType is the MBR system ID byte (0 for GPT partitions).
	MBRType byte
	// TypeGUID and GUID identify a GPT partition's type and instance.
	TypeGUID, GUID GUID
	// Name is the GPT partition name (empty for MBR).
	Name string
	// Bootable is the MBR active flag or the GPT legacy-BIOS-bootable attribute.
	Bootable bool
	// Logical is set for MBR partitions inside an extended partition.
	Logical bool
}

// Type describes the partition type: the MBR byte in hex or the GPT type GUID.
func (p Partition) Type() string {
	if p.TypeGUID != (GUID{}) {
		return p.TypeGUID.String()
	}
	return fmt.Sprintf("0x%02x", p.MBRType)
}

// MayHoldNTFS reports whether the partition type is one Windows uses for
// NTFS (MBR 0x07 or GPT basic data); callers still check the boot sector.
func (p Partition) MayHoldNTFS() bool {
	return p.MBRType == mbrTypeNTFS || p.TypeGUID == GUIDBasicData
}

// Section returns a reader over the partition's bytes.
func (p Partition) Section(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, p.Start, p.Size)
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoTable means the disk has neither a partition table nor a
	// recognised file system at offset 0.
	ErrNoTable = errors.New("no partition table or file system found")
	// ErrChecksum means a GPT CRC32 did not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrBadTable means a table is structurally invalid.
	ErrBadTable = errors.New("invalid partition table")
	// ErrTruncated means a structure lies past the end of the disk.
	ErrTruncated = errors.New("truncated")
)

// FormatError reports malformed partitioning data and where it was found.
type FormatError struct {
	Offset    int64  // absolute byte offset in the disk
	Structure string // e.g. "GPT header", "EBR"
	Msg       string
	Value     any // the offending value, if any
	Err       error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s at byte 0x%x: %s", e.Structure, e.Offset, e.Msg)
	if e.Value != nil {
		s += fmt.Sprintf(" (value %#v)", e.Value)
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, structure string, sentinel error, value any, format string, args ...any) error {
	return &FormatError{Offset: off, Structure: structure, Msg: fmt.Sprintf(format, args...), Value: value, Err: sentinel}
}

// Read decodes the partitioning of a disk of the given size, detecting the
// logical sector size (512 or 4096) from where the GPT header or the first
// partition's boot sector is found.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	sector0 := make([]byte, minSector)
	if err := readFull(r, size, sector0, 0, "sector 0"); err != nil {
		return nil, err
	}
	if looksLikeFileSystem(sector0) {
		return &Table{Scheme: SchemeNone, SectorSize: minSector,
			Partitions: []Partition{{Index: 1, Start: 0, Size: size}}}, nil
	}
	if le16(sector0[bootSignatureOffset:]) != bootSignature {
		return nil, formatErr(bootSignatureOffset, "MBR", ErrNoTable, le16(sector0[bootSignatureOffset:]),
			"no boot signature 0x55aa and no file system boot sector")
	}
	mbr := parseMBR(sector0)
	if mbr.protective() {
		return readGPT(r, size)
	}
	ss := guessMBRSectorSize(r, size, mbr)
	return readMBR(r, size, mbr, ss)
}

// ReadSectorSize is Read with the logical sector size given rather than
// detected.
func ReadSectorSize(r io.ReaderAt, size, sectorSize int64) (*Table, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("partition: unsupported sector size %d", sectorSize)
	}
	sector0 := make([]byte, minSector)
	if err := readFull(r, size, sector0, 0, "sector 0"); err != nil {
		return nil, err
	}
	if looksLikeFileSystem(sector0) {
		return &Table{Scheme: SchemeNone, SectorSize: sectorSize,
			Partitions: []Partition{{Index: 1, Start: 0, Size: size}}}, nil
	}
	mbr := parseMBR(sector0)
	if mbr.protective() {
		return readGPTSector(r, size, sectorSize)
	}
	return readMBR(r, size, mbr, sectorSize)
}

// readFull reads exactly len(p) bytes at off, reporting a structure past the
// end of the disk as a FormatError.
func readFull(r io.ReaderAt, size int64, p []byte, off int64, structure string) error {
	if off < 0 || off+int64(len(p)) > size {
		return formatErr(off, structure, ErrTruncated, nil, "%d bytes needed but the disk is %d bytes", len(p), size)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s at byte 0x%x: %w", structure, off, err)
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
