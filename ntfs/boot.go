package ntfs

import (
	"bytes"
	"math/bits"
)

// Boot sector (BPB) layout.
const (
	bootSectorSize              = 512
	bootOEMIDOff                = 3
	bootBytesPerSectorOff       = 11
	bootSectorsPerClusterOff    = 13
	bootTotalSectorsOff         = 40
	bootMFTClusterOff           = 48
	bootMFTMirrClusterOff       = 56
	bootClustersPerMFTRecordOff = 64
	bootClustersPerIndexOff     = 68
	bootSerialOff               = 72
	bootSignatureOff            = 510
	bootSignature               = 0xaa55
	maxClusterSize              = 2 << 20 // Windows 10 1709+ allows 2 MiB
	minRecordSize               = 256
	maxRecordSize               = 64 << 10
)

var (
	oemNTFS      = []byte("NTFS    ")
	oemBitLocker = []byte("-FVE-FS-")
)

// BootSector is the decoded NTFS boot sector.
type BootSector struct {
	OEMID             string
	BytesPerSector    int64
	ClusterSize       int64
	TotalSectors      int64
	MFTCluster        int64
	MFTMirrCluster    int64
	MFTRecordSize     int64
	IndexRecordSize   int64
	VolumeSerial      uint64
	rawSectorsPerClus byte
}

// parseBoot validates and decodes the first sector of a volume of the given size.
func parseBoot(b []byte, size int64) (*BootSector, error) {
	if len(b) < bootSectorSize {
		return nil, formatErr(0, "boot sector", ErrTruncated, len(b), "volume shorter than a boot sector")
	}
	oem := b[bootOEMIDOff : bootOEMIDOff+8]
	if bytes.Equal(oem, oemBitLocker) {
		return nil, formatErr(bootOEMIDOff, "boot sector", ErrBitLocker, string(oem), "BitLocker OEM ID; decrypt the volume first")
	}
	if !bytes.Equal(oem, oemNTFS) {
		return nil, formatErr(bootOEMIDOff, "boot sector", ErrNotNTFS, string(oem), "OEM ID is not %q", oemNTFS)
	}
	if s := le16(b[bootSignatureOff:]); s != bootSignature {
		return nil, formatErr(bootSignatureOff, "boot sector", ErrNotNTFS, s, "missing 0x55aa signature")
	}
	bs := &BootSector{OEMID: string(oem), VolumeSerial: le64(b[bootSerialOff:])}
	bps := le16(b[bootBytesPerSectorOff:])
	if bps < 256 || bps > 4096 || bits.OnesCount16(bps) != 1 {
		return nil, formatErr(bootBytesPerSectorOff, "boot sector", ErrNotNTFS, bps, "bytes per sector must be a power of two in 256..4096")
	}
	bs.BytesPerSector = int64(bps)
	spc := b[bootSectorsPerClusterOff]
	bs.rawSectorsPerClus = spc
	switch {
	case spc == 0:
		return nil, formatErr(bootSectorsPerClusterOff, "boot sector", ErrNotNTFS, spc, "zero sectors per cluster")
	case spc <= 0x80:
		if bits.OnesCount8(spc) != 1 {
			return nil, formatErr(bootSectorsPerClusterOff, "boot sector", ErrNotNTFS, spc, "sectors per cluster is not a power of two")
		}
		bs.ClusterSize = int64(spc) * bs.BytesPerSector
	default:
		// Values above 0x80 encode 2^(256-v) sectors, for clusters past 64 KiB.
		shift := 256 - int(spc)
		if shift > 20 {
			return nil, formatErr(bootSectorsPerClusterOff, "boot sector", ErrNotNTFS, spc, "cluster size exponent too large")
		}
		bs.ClusterSize = bs.BytesPerSector << shift
	}
	if bs.ClusterSize > maxClusterSize {
		return nil, formatErr(bootSectorsPerClusterOff, "boot sector", ErrNotNTFS, bs.ClusterSize, "cluster size above 2 MiB")
	}
	bs.TotalSectors = int64(le64(b[bootTotalSectorsOff:]))
	if bs.TotalSectors <= 0 || bs.TotalSectors > (1<<62)/bs.BytesPerSector {
		return nil, formatErr(bootTotalSectorsOff, "boot sector", ErrNotNTFS, bs.TotalSectors, "implausible total sector count")
	}
	var err error
	if bs.MFTRecordSize, err = recordSizeField(b, bootClustersPerMFTRecordOff, bs.ClusterSize, "clusters per MFT record"); err != nil {
		return nil, err
	}
	if bs.IndexRecordSize, err = recordSizeField(b, bootClustersPerIndexOff, bs.ClusterSize, "clusters per index record"); err != nil {
		return nil, err
	}
	clusters := bs.TotalSectors * bs.BytesPerSector / bs.ClusterSize
	bs.MFTCluster = int64(le64(b[bootMFTClusterOff:]))
	bs.MFTMirrCluster = int64(le64(b[bootMFTMirrClusterOff:]))
	if bs.MFTCluster <= 0 || bs.MFTCluster >= clusters {
		return nil, formatErr(bootMFTClusterOff, "boot sector", ErrNotNTFS, bs.MFTCluster, "$MFT cluster outside the volume's %d clusters", clusters)
	}
	if bs.MFTCluster*bs.ClusterSize+bs.MFTRecordSize > size {
		return nil, formatErr(bootMFTClusterOff, "boot sector", ErrTruncated, bs.MFTCluster, "$MFT lies past the end of the %d-byte image", size)
	}
	return bs, nil
}

// recordSizeField decodes the signed "clusters per record" encoding:
// positive counts clusters, negative n means 2^-n bytes.
func recordSizeField(b []byte, off int, clusterSize int64, name string) (int64, error) {
	v := int8(b[off])
	var size int64
	if v > 0 {
		size = int64(v) * clusterSize
	} else {
		if -int(v) > 16 || v == 0 {
			return 0, formatErr(int64(off), "boot sector", ErrNotNTFS, v, "bad %s encoding", name)
		}
		size = 1 << -int(v)
	}
	if size < minRecordSize || size > maxRecordSize || bits.OnesCount64(uint64(size)) != 1 {
		return 0, formatErr(int64(off), "boot sector", ErrNotNTFS, size, "%s gives %d bytes", name, size)
	}
	return size, nil
}
