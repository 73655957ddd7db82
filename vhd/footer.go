package vhd

import (
	"bytes"
	"encoding/binary"
	"unicode/utf16"
)

// Layout of the VHD footer and dynamic disk header (Microsoft "Virtual
// Hard Disk Image Format Specification" 1.0), all big-endian.
const (
	footerCookie     = "conectix"
	dynamicCookie    = "cxsparse"
	footerSize       = 512
	dynamicSize      = 1024
	sectorSize       = 512
	diskTypeFixed    = 2
	diskTypeDynamic  = 3
	diskTypeDiff     = 4
	noDataOffset     = 0xffffffffffffffff
	batUnused        = 0xffffffff
	maxSize          = 2040 << 30 // the format's (and QEMU's) limit
	maxBlockSize     = 256 << 20
	maxCHSSectors    = 65535 * 16 * 255
	footerChecksumAt = 64
	dynChecksumAt    = 36
)

// footer is the hard disk footer, with the specification's names.
type footer struct {
	Cookie             string
	Features           uint32
	FileFormatVersion  uint32
	DataOffset         uint64
	CreatorApplication string
	CurrentSize        uint64
	Cylinders          uint16
	Heads              uint8
	SectorsPerTrack    uint8
	DiskType           uint32
	Checksum           uint32
}

func decodeFooter(b []byte) footer {
	be := binary.BigEndian
	return footer{
		Cookie:             string(b[0:8]),
		Features:           be.Uint32(b[8:]),
		FileFormatVersion:  be.Uint32(b[12:]),
		DataOffset:         be.Uint64(b[16:]),
		CreatorApplication: string(b[28:32]),
		CurrentSize:        be.Uint64(b[48:]),
		Cylinders:          be.Uint16(b[56:]),
		Heads:              b[58],
		SectorsPerTrack:    b[59],
		DiskType:           be.Uint32(b[60:]),
		Checksum:           be.Uint32(b[64:]),
	}
}

// checksum is the one's complement of the byte sum with the checksum
// field (4 bytes at at) skipped.
func checksum(b []byte, at int) uint32 {
	var sum uint32
	for i, c := range b {
		if i >= at && i < at+4 {
			continue
		}
		sum += uint32(c)
	}
	return ^sum
}

// validFooter reports whether b holds a footer with a good checksum.
func validFooter(b []byte) bool {
	return len(b) >= footerSize && string(b[:8]) == footerCookie &&
		checksum(b[:footerSize], footerChecksumAt) == binary.BigEndian.Uint32(b[footerChecksumAt:])
}

// Sniff reports whether header (the first bytes of a file) starts a
// dynamic or differencing VHD, which keeps a copy of its footer at offset
// 0. A fixed VHD has its only footer in its last 512 bytes: see
// SniffFooter.
func Sniff(header []byte) bool { return bytes.HasPrefix(header, []byte(footerCookie)) }

// SniffFooter reports whether tail (a file's last 512 bytes) is a valid
// VHD footer, which is how a fixed VHD is recognised.
func SniffFooter(tail []byte) bool { return validFooter(tail) }

// dynamicHeader is the dynamic disk header.
type dynamicHeader struct {
	Cookie            string
	TableOffset       uint64
	HeaderVersion     uint32
	MaxTableEntries   uint32
	BlockSize         uint32
	Checksum          uint32
	ParentUnicodeName string
}

func decodeDynamicHeader(b []byte) dynamicHeader {
	be := binary.BigEndian
	name := make([]uint16, 0, 256)
	for i := 64; i < 64+512; i += 2 {
		c := be.Uint16(b[i:])
		if c == 0 {
			break
		}
		name = append(name, c)
	}
	return dynamicHeader{
		Cookie:            string(b[0:8]),
		TableOffset:       be.Uint64(b[16:]),
		HeaderVersion:     be.Uint32(b[24:]),
		MaxTableEntries:   be.Uint32(b[28:]),
		BlockSize:         be.Uint32(b[32:]),
		Checksum:          be.Uint32(b[36:]),
		ParentUnicodeName: string(utf16.Decode(name)),
	}
}

// usesCHS reports whether the disk size is taken from the CHS geometry
// rather than CurrentSize. This follows QEMU (block/vpc.c), the oracle:
// Virtual PC sizes disks by geometry, while Hyper-V ("win "), Disk2vhd
// ("d2v "), XenServer ("tap\0"), XenConverter ("CTXS") and QEMU with
// force_size ("qem2") use CurrentSize; a disk at the maximum geometry is
// sized by CurrentSize too, as the geometry cannot describe it.
func (f *footer) usesCHS() bool {
	switch f.CreatorApplication {
	case "win ", "d2v ", "tap\x00", "CTXS", "qem2":
		return false
	}
	return int64(f.Cylinders)*int64(f.Heads)*int64(f.SectorsPerTrack) != maxCHSSectors
}

// size is the logical disk size.
func (f *footer) size() int64 {
	if f.usesCHS() {
		return int64(f.Cylinders) * int64(f.Heads) * int64(f.SectorsPerTrack) * sectorSize
	}
	// QEMU counts whole sectors of CurrentSize.
	return int64(f.CurrentSize / sectorSize * sectorSize)
}
