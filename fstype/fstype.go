// Package fstype recognises the file system of a volume from its boot
// sector. It is the one place kvmify decides "this partition is NTFS" or
// "this is BitLocker", so inspect, plan, ls, cat and serve agree.
package fstype

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Kind is a file system recognised from a boot sector.
type Kind int

// The kinds Detect tells apart.
const (
	Unknown   Kind = iota // no boot sector kvmify recognises
	NTFS                  // OEM ID "NTFS    "
	BitLocker             // OEM ID "-FVE-FS-": a BitLocker-encrypted volume
	ExFAT                 // OEM ID "EXFAT   "
	FAT                   // FAT12/16/32 type string and boot signature
)

var kindNames = [...]string{Unknown: "unknown", NTFS: "NTFS", BitLocker: "BitLocker", ExFAT: "exFAT", FAT: "FAT"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Fields of a boot sector used to recognise it.
const (
	// SectorSize is how many bytes OfBootSector looks at.
	SectorSize          = 512
	oemIDOffset         = 3
	oemIDLength         = 8
	bootSignatureOffset = 510
	bootSignature       = 0xaa55
	fat16TypeOffset     = 0x36
	fat32TypeOffset     = 0x52
)

var oemIDs = []struct {
	id   string
	kind Kind
}{
	{"NTFS    ", NTFS},
	{"-FVE-FS-", BitLocker},
	{"EXFAT   ", ExFAT},
}

// OfBootSector names the file system whose boot sector is sector (at least
// SectorSize bytes; a shorter one is Unknown).
func OfBootSector(sector []byte) Kind {
	if len(sector) < SectorSize {
		return Unknown
	}
	oem := sector[oemIDOffset : oemIDOffset+oemIDLength]
	for _, o := range oemIDs {
		if bytes.Equal(oem, []byte(o.id)) {
			return o.kind
		}
	}
	if binary.LittleEndian.Uint16(sector[bootSignatureOffset:]) != bootSignature {
		return Unknown
	}
	if bytes.HasPrefix(sector[fat16TypeOffset:], []byte("FAT1")) ||
		bytes.HasPrefix(sector[fat32TypeOffset:], []byte("FAT32")) {
		return FAT
	}
	return Unknown
}

// Detect reads the boot sector at off in r and names its file system. A
// sector that cannot be read whole is an error naming the offset.
func Detect(r io.ReaderAt, off int64) (Kind, error) {
	b := make([]byte, SectorSize)
	n, err := r.ReadAt(b, off)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Unknown, fmt.Errorf("reading the boot sector at byte %d: %w", off, err)
	}
	return OfBootSector(b), nil
}
