package windows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fstype"
)

// Geometry is a disk's CHS geometry as INT 13h AH=08h reports it (counts,
// not maximum indices).
type Geometry struct {
	Cylinders, Heads, SectorsPerTrack uint32
}

func (g Geometry) String() string {
	return fmt.Sprintf("%d/%d/%d (C/H/S)", g.Cylinders, g.Heads, g.SectorsPerTrack)
}

// MBR layout read by QEMU's geometry guess.
const (
	sectorSize         = 512
	mbrSignatureOffset = 510
	mbrPartTable       = 446
	mbrEntrySize       = 16
	mbrEntries         = 4
	mbrEndHead         = 5  // in an entry
	mbrEndSector       = 6  // low 6 bits; high 2 are cylinder bits
	mbrNumSectors      = 12 // in an entry
)

// Translations SeaBIOS applies (its TRANSLATION_* values, which QEMU's
// CMOS byte 0x39 carries for the first four IDE drives).
type translation int

const (
	translationNone translation = iota
	translationLBA
	translationLarge
)

// Limits of the ATA physical geometry QEMU invents and of the BIOS CHS
// interface.
const (
	physHeads        = 16
	physSectors      = 63
	maxPhysCylinders = 16383
	maxBIOSCylinders = 1024
	maxBIOSHeads     = 255
	largeLimit       = 131072 // cylinders*heads up to which LARGE (bit-shift) translation is used
)

// FirmwareGeometry is the geometry SeaBIOS reports through INT 13h AH=08h
// for the disk kvmify attaches to QEMU's pc machine (ide-hd on ide.0, no
// geometry properties). It follows the two programs involved, as read in
// their sources' documented behaviour and verified by the boot-sector probe
// (TestGeometryProbeUnderQEMU) on every case the test lists:
//
//   - QEMU (hw/block/hd-geometry.c) guesses the physical geometry from the
//     MBR: a partition entry's end head+1 and end sector give heads and
//     sectors per track. If that finds ≤16 heads it is the physical
//     geometry and no translation is hinted; otherwise, or without a usable
//     entry, the geometry is size/(16·63) cylinders, 16 heads, 63 sectors
//     with the LBA translation hint (LARGE when cylinders·heads ≤ 131072;
//     none at all when it fits 1024/16/63).
//   - SeaBIOS (src/block.c) reads the hint from CMOS and translates: LBA
//     assists with 63 sectors and 16, 32, 64, 128 or 255 heads from the
//     size; LARGE doubles heads while halving cylinders until ≤ 1024.
func FirmwareGeometry(size int64, mbr []byte) Geometry {
	sectors := uint64(size) / sectorSize
	c, h, s, trans := qemuGuess(sectors, mbr)
	switch trans {
	case translationLBA:
		s = physSectors
		if sectors > physSectors*maxBIOSHeads*maxBIOSCylinders {
			h, c = maxBIOSHeads, maxBIOSCylinders
			break
		}
		sect := uint32(sectors / physSectors)
		switch heads := sect / maxBIOSCylinders; {
		case heads > 128:
			h = 255
		case heads > 64:
			h = 128
		case heads > 32:
			h = 64
		case heads > 16:
			h = 32
		default:
			h = 16
		}
		c = sect / h
	case translationLarge:
		for c > maxBIOSCylinders {
			c >>= 1
			h <<= 1
			if h > 127 {
				break
			}
		}
	}
	if c > maxBIOSCylinders {
		c = maxBIOSCylinders
	}
	return Geometry{Cylinders: c, Heads: h, SectorsPerTrack: s}
}

// qemuGuess is QEMU's hd_geometry_guess for a drive without geometry
// properties.
func qemuGuess(sectors uint64, mbr []byte) (c, h, s uint32, t translation) {
	sizeGuess := func() (uint32, uint32, uint32) {
		cyl := sectors / (physHeads * physSectors)
		switch {
		case cyl > maxPhysCylinders:
			cyl = maxPhysCylinders
		case cyl < 2:
			cyl = 2
		}
		return uint32(cyl), physHeads, physSectors
	}
	lc, lh, ls, ok := mbrCHS(sectors, mbr)
	switch {
	case !ok:
		c, h, s = sizeGuess()
		switch {
		case c <= maxBIOSCylinders && h <= 16 && s <= 63:
			t = translationNone
		case c*h <= largeLimit:
			t = translationLarge
		default:
			t = translationLBA
		}
	case lh > 16:
		c, h, s = sizeGuess()
		if c*h <= largeLimit {
			t = translationLarge
		} else {
			t = translationLBA
		}
	default:
		c, h, s, t = lc, lh, ls, translationNone
	}
	return c, h, s, t
}

// mbrCHS is QEMU's guess_disk_lchs: the first partition entry with sectors
// and a non-zero end head, assumed to end on a cylinder boundary.
func mbrCHS(sectors uint64, mbr []byte) (c, h, s uint32, ok bool) {
	if len(mbr) < sectorSize || mbr[mbrSignatureOffset] != 0x55 || mbr[mbrSignatureOffset+1] != 0xAA {
		return 0, 0, 0, false
	}
	for i := 0; i < mbrEntries; i++ {
		e := mbr[mbrPartTable+i*mbrEntrySize:]
		n := binary.LittleEndian.Uint32(e[mbrNumSectors:])
		if n == 0 || e[mbrEndHead] == 0 {
			continue
		}
		h = uint32(e[mbrEndHead]) + 1
		s = uint32(e[mbrEndSector] & 63)
		if s == 0 {
			continue
		}
		cyl := sectors / uint64(h*s)
		if cyl < 1 || cyl > maxPhysCylinders {
			continue
		}
		return uint32(cyl), h, s, true
	}
	return 0, 0, 0, false
}

// NTFS boot sector (BIOS parameter block) fields XP's boot code uses for
// CHS reads.
const (
	bpbBytesPerSector  = 0x0B
	bpbSectorsPerTrack = 0x18
	bpbTotalSectors    = 0x28
	bpbHeads           = 0x1A
)

// GeometryFix is the boot-sector change that makes an NTFS volume's BIOS
// parameter block agree with the firmware's geometry.
type GeometryFix struct {
	Firmware Geometry
	// OldHeads, OldSectors are the boot sector's values as found.
	OldHeads, OldSectors uint16
	Writes               []disk.Write
}

// ErrNoBootSector marks a volume whose first sector could not be read.
var ErrNoBootSector = errors.New("windows: NTFS boot sector unreadable")

// PlanGeometryFix compares the heads (offset 0x1A) and sectors per track
// (0x18) of the NTFS boot sector at partStart with the geometry the
// firmware will report for the whole disk d, and plans writes of the
// fields that differ. Windows XP's and 2000's NTFS boot code computes CHS
// addresses from these fields and stops with "A disk read error occurred"
// when they disagree with the BIOS (the reason virt-v2v rewrites them); no
// source of that boot code could be read. The backup boot sector gets the
// same fields.
func PlanGeometryFix(d disk.Reader, partStart int64) (*GeometryFix, error) {
	mbr := make([]byte, sectorSize)
	if _, err := d.ReadAt(mbr, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("windows: reading the MBR: %w", err)
	}
	bs := make([]byte, sectorSize)
	if n, err := d.ReadAt(bs, partStart); n < len(bs) {
		return nil, fmt.Errorf("%w at byte %d: %v", ErrNoBootSector, partStart, err)
	}
	if fstype.OfBootSector(bs) != fstype.NTFS {
		return nil, fmt.Errorf("%w at byte %d: no NTFS OEM ID", ErrNoBootSector, partStart)
	}
	g := FirmwareGeometry(d.Size(), mbr)
	f := &GeometryFix{Firmware: g,
		OldSectors: binary.LittleEndian.Uint16(bs[bpbSectorsPerTrack:]),
		OldHeads:   binary.LittleEndian.Uint16(bs[bpbHeads:])}
	// The same fields go into the backup boot sector, the sector after the
	// volume's last (NTFS keeps it there), so the two stay equal: ntfs-3g's
	// ntfsfix and chkdsk compare them.
	sectors := []int64{partStart}
	bps := int64(binary.LittleEndian.Uint16(bs[bpbBytesPerSector:]))
	total := int64(binary.LittleEndian.Uint64(bs[bpbTotalSectors:]))
	if bps >= sectorSize && total > 0 && total < d.Size()/bps {
		backup := partStart + total*bps
		bb := make([]byte, sectorSize)
		if n, _ := d.ReadAt(bb, backup); n == len(bb) && fstype.OfBootSector(bb) == fstype.NTFS {
			sectors = append(sectors, backup)
		}
	}
	for i, at := range sectors {
		which := "NTFS boot sector"
		if i > 0 {
			which = "NTFS backup boot sector"
		}
		if uint32(f.OldSectors) != g.SectorsPerTrack {
			f.Writes = append(f.Writes, disk.Write{Offset: at + bpbSectorsPerTrack,
				Data: binary.LittleEndian.AppendUint16(nil, uint16(g.SectorsPerTrack)), What: which + " sectors per track (firmware geometry)"})
		}
		if uint32(f.OldHeads) != g.Heads {
			f.Writes = append(f.Writes, disk.Write{Offset: at + bpbHeads,
				Data: binary.LittleEndian.AppendUint16(nil, uint16(g.Heads)), What: which + " heads (firmware geometry)"})
		}
	}
	return f, nil
}
