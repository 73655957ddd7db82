package partition

import "github.com/kvmify/kvmify/fstype"

// Fields of a file system boot sector used to recognise a bare partition.
const (
	minSector           = 512
	bootSignatureOffset = 510
	bootSignature       = 0xaa55
	oemIDOffset         = 3 // where the OEM ID of a file system boot sector starts
)

// looksLikeFileSystem reports whether sector holds a file system boot
// sector rather than an MBR; package fstype decides, as everywhere else.
func looksLikeFileSystem(sector []byte) bool {
	return fstype.OfBootSector(sector) != fstype.Unknown
}
