package partition

import "bytes"

// Fields of a file system boot sector used to recognise a bare partition.
const (
	minSector           = 512
	bootSignatureOffset = 510
	bootSignature       = 0xaa55
	oemIDOffset         = 3
	oemIDLength         = 8
	fat16TypeOffset     = 0x36
	fat32TypeOffset     = 0x52
)

var fsOEMIDs = [][]byte{
	[]byte("NTFS    "),
	[]byte("-FVE-FS-"), // BitLocker
	[]byte("EXFAT   "),
}

// looksLikeFileSystem reports whether sector holds a file system boot
// sector rather than an MBR: an NTFS/BitLocker/exFAT OEM ID, or a FAT type
// string.
func looksLikeFileSystem(sector []byte) bool {
	oem := sector[oemIDOffset : oemIDOffset+oemIDLength]
	for _, id := range fsOEMIDs {
		if bytes.Equal(oem, id) {
			return true
		}
	}
	if le16(sector[bootSignatureOffset:]) != bootSignature {
		return false
	}
	return bytes.HasPrefix(sector[fat16TypeOffset:], []byte("FAT1")) ||
		bytes.HasPrefix(sector[fat32TypeOffset:], []byte("FAT32"))
}
