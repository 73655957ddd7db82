package partition

import (
	"io"
)

// MBR layout (the classic PC partition table).
const (
	mbrTableOffset   = 446
	mbrEntrySize     = 16
	mbrEntries       = 4
	mbrStatusActive  = 0x80
	mbrTypeEmpty     = 0x00
	mbrTypeExtCHS    = 0x05
	mbrTypeExtLBA    = 0x0f
	mbrTypeExtLinux  = 0x85
	mbrTypeNTFS      = 0x07
	mbrTypeGPTProt   = 0xee
	firstLogicalIdx  = 5
	maxLogicals      = 128 // a guard against hostile EBR chains
	entryStatusOff   = 0
	entryTypeOff     = 4
	entryStartLBAOff = 8
	entrySectorsOff  = 12
)

// mbrEntry is one raw 16-byte partition table entry.
type mbrEntry struct {
	Status      byte
	SystemID    byte
	StartingLBA uint32
	SizeInLBA   uint32
}

type mbrTable [mbrEntries]mbrEntry

func parseMBR(sector []byte) mbrTable {
	var t mbrTable
	for i := range t {
		e := sector[mbrTableOffset+i*mbrEntrySize:]
		t[i] = mbrEntry{
			Status:      e[entryStatusOff],
			SystemID:    e[entryTypeOff],
			StartingLBA: le32(e[entryStartLBAOff:]),
			SizeInLBA:   le32(e[entrySectorsOff:]),
		}
	}
	return t
}

func (t mbrTable) protective() bool {
	for _, e := range t {
		if e.SystemID == mbrTypeGPTProt {
			return true
		}
	}
	return false
}

func isExtended(id byte) bool {
	return id == mbrTypeExtCHS || id == mbrTypeExtLBA || id == mbrTypeExtLinux
}

// guessMBRSectorSize picks 4096 only when a partition holds a recognisable
// boot sector (or, for an extended partition, an EBR) at 4096-byte LBAs and
// not at 512-byte ones; MBR itself does not record its sector size. The
// first entry that shows either decides: a partition that holds no file
// system yet (zeros) says nothing, so the next one is asked, the extended
// partition's boot record included.
func guessMBRSectorSize(r io.ReaderAt, size int64, t mbrTable) int64 {
	for _, e := range t {
		if e.SystemID == mbrTypeEmpty || e.SizeInLBA == 0 {
			continue
		}
		plausible := plausibleStart
		if isExtended(e.SystemID) {
			plausible = plausibleEBR
		}
		if plausible(r, size, int64(e.StartingLBA)*512) {
			return 512
		}
		if plausible(r, size, int64(e.StartingLBA)*4096) {
			return 4096
		}
	}
	return 512
}

// plausibleEBR reports whether an extended boot record starts at off: the
// boot signature, and a first entry that is empty or a partition.
func plausibleEBR(r io.ReaderAt, size, off int64) bool {
	b := make([]byte, minSector)
	if readFull(r, size, b, off, "EBR") != nil || le16(b[bootSignatureOffset:]) != bootSignature {
		return false
	}
	e := parseMBR(b)[0]
	return !isExtended(e.SystemID) && e.SystemID != mbrTypeGPTProt
}

func plausibleStart(r io.ReaderAt, size, off int64) bool {
	b := make([]byte, minSector)
	if readFull(r, size, b, off, "boot sector") != nil {
		return false
	}
	return looksLikeFileSystem(b) || le16(b[bootSignatureOffset:]) == bootSignature
}

func readMBR(r io.ReaderAt, size int64, t mbrTable, ss int64) (*Table, error) {
	tab := &Table{Scheme: SchemeMBR, SectorSize: ss}
	var ext *mbrEntry
	for i, e := range t {
		if e.SystemID == mbrTypeEmpty || e.SizeInLBA == 0 {
			continue
		}
		if isExtended(e.SystemID) {
			if ext == nil {
				ext = &t[i]
			}
			continue
		}
		p, err := mbrPartition(i+1, e, 0, ss, size, mbrTableOffset+int64(i)*mbrEntrySize)
		if err != nil {
			return nil, err
		}
		tab.Partitions = append(tab.Partitions, p)
	}
	if ext != nil {
		logicals, err := readLogicals(r, size, int64(ext.StartingLBA), ss)
		if err != nil {
			return nil, err
		}
		tab.Partitions = append(tab.Partitions, logicals...)
	}
	return tab, nil
}

func mbrPartition(index int, e mbrEntry, baseLBA, ss, size, entryOff int64) (Partition, error) {
	start := (baseLBA + int64(e.StartingLBA)) * ss
	length := int64(e.SizeInLBA) * ss
	if start+length > size {
		return Partition{}, formatErr(entryOff, "MBR partition entry", ErrTruncated, e.SizeInLBA,
			"partition %d (bytes 0x%x+0x%x) ends past the disk (%d bytes)", index, start, length, size)
	}
	return Partition{
		Index: index, Start: start, Size: length, MBRType: e.SystemID,
		Bootable: e.Status == mbrStatusActive,
	}, nil
}

// readLogicals walks the chain of extended boot records. Each EBR's first
// entry is a logical partition relative to that EBR; its second points at
// the next EBR relative to the extended partition's start.
func readLogicals(r io.ReaderAt, size, extLBA, ss int64) ([]Partition, error) {
	var out []Partition
	seen := map[int64]bool{}
	ebrLBA := extLBA
	sector := make([]byte, minSector)
	for {
		off := ebrLBA * ss
		if seen[off] {
			return nil, formatErr(off, "EBR", ErrBadTable, ebrLBA, "extended boot record chain loops")
		}
		if len(seen) >= maxLogicals {
			return nil, formatErr(off, "EBR", ErrBadTable, len(seen), "more than %d logical partitions", maxLogicals)
		}
		seen[off] = true
		if err := readFull(r, size, sector, off, "EBR"); err != nil {
			return nil, err
		}
		if le16(sector[bootSignatureOffset:]) != bootSignature {
			return nil, formatErr(off+bootSignatureOffset, "EBR", ErrBadTable, le16(sector[bootSignatureOffset:]), "missing boot signature")
		}
		t := parseMBR(sector)
		if t[0].SystemID != mbrTypeEmpty && t[0].SizeInLBA != 0 {
			p, err := mbrPartition(firstLogicalIdx+len(out), t[0], ebrLBA, ss, size, off+mbrTableOffset)
			if err != nil {
				return nil, err
			}
			p.Logical = true
			out = append(out, p)
		}
		next := t[1]
		if next.SystemID == mbrTypeEmpty || next.StartingLBA == 0 || !isExtended(next.SystemID) {
			return out, nil
		}
		ebrLBA = extLBA + int64(next.StartingLBA)
	}
}
