package partition

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// GPT header and entry layout (UEFI specification, chapter 5).
const (
	gptSignature          = "EFI PART"
	gptHeaderMinSize      = 92
	gptSigOff             = 0
	gptHeaderSizeOff      = 12
	gptHeaderCRCOff       = 16
	gptMyLBAOff           = 24
	gptAlternateLBAOff    = 32
	gptFirstUsableLBAOff  = 40
	gptLastUsableLBAOff   = 48
	gptEntryLBAOff        = 72
	gptNumEntriesOff      = 80
	gptEntrySizeOff       = 84
	gptEntriesCRCOff      = 88
	gptEntryMinSize       = 128
	gptMaxEntryArrayBytes = 1 << 20 // far above the usual 128 x 128 bytes
	gptEntryTypeOff       = 0
	gptEntryGUIDOff       = 16
	gptEntryStartOff      = 32
	gptEntryEndOff        = 40
	gptEntryAttrOff       = 48
	gptEntryNameOff       = 56
	gptEntryNameBytes     = 72
	gptAttrLegacyBootable = 1 << 2
)

// gptHeader is the raw GPT header.
type gptHeader struct {
	HeaderSize               uint32
	HeaderCRC32              uint32
	MyLBA                    uint64
	AlternateLBA             uint64
	FirstUsableLBA           uint64
	LastUsableLBA            uint64
	PartitionEntryLBA        uint64
	NumberOfPartitionEntries uint32
	SizeOfPartitionEntry     uint32
	PartitionEntryArrayCRC32 uint32
}

// readGPT finds the GPT header at LBA 1 for 512- or 4096-byte sectors.
func readGPT(r io.ReaderAt, size int64) (*Table, error) {
	var firstErr error
	for _, ss := range []int64{512, 4096} {
		t, err := readGPTSector(r, size, ss)
		if err == nil {
			return t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func readGPTSector(r io.ReaderAt, size, ss int64) (*Table, error) {
	primary, perr := loadGPT(r, size, ss, 1)
	if perr == nil {
		return primary, nil
	}
	lastLBA := size/ss - 1
	backup, berr := loadGPT(r, size, ss, lastLBA)
	if berr != nil {
		return nil, perr
	}
	backup.Warnings = append(backup.Warnings,
		fmt.Sprintf("primary GPT header unusable (%v); using the backup header at LBA %d", perr, lastLBA))
	return backup, nil
}

// loadGPT reads and verifies the header at lba and its entry array.
func loadGPT(r io.ReaderAt, size, ss, lba int64) (*Table, error) {
	off := lba * ss
	buf := make([]byte, ss)
	if err := readFull(r, size, buf, off, "GPT header"); err != nil {
		return nil, err
	}
	if !bytes.Equal(buf[gptSigOff:gptSigOff+len(gptSignature)], []byte(gptSignature)) {
		return nil, formatErr(off, "GPT header", ErrBadTable, string(buf[:8]), "no %q signature", gptSignature)
	}
	h := gptHeader{
		HeaderSize:               le32(buf[gptHeaderSizeOff:]),
		HeaderCRC32:              le32(buf[gptHeaderCRCOff:]),
		MyLBA:                    le64(buf[gptMyLBAOff:]),
		AlternateLBA:             le64(buf[gptAlternateLBAOff:]),
		FirstUsableLBA:           le64(buf[gptFirstUsableLBAOff:]),
		LastUsableLBA:            le64(buf[gptLastUsableLBAOff:]),
		PartitionEntryLBA:        le64(buf[gptEntryLBAOff:]),
		NumberOfPartitionEntries: le32(buf[gptNumEntriesOff:]),
		SizeOfPartitionEntry:     le32(buf[gptEntrySizeOff:]),
		PartitionEntryArrayCRC32: le32(buf[gptEntriesCRCOff:]),
	}
	if h.HeaderSize < gptHeaderMinSize || int64(h.HeaderSize) > ss {
		return nil, formatErr(off+gptHeaderSizeOff, "GPT header", ErrBadTable, h.HeaderSize, "header size out of range")
	}
	hdr := append([]byte(nil), buf[:h.HeaderSize]...)
	clear(hdr[gptHeaderCRCOff : gptHeaderCRCOff+4])
	if got := crc32.ChecksumIEEE(hdr); got != h.HeaderCRC32 {
		return nil, formatErr(off+gptHeaderCRCOff, "GPT header", ErrChecksum, h.HeaderCRC32, "header CRC32 is 0x%08x, computed 0x%08x", h.HeaderCRC32, got)
	}
	if h.MyLBA != uint64(lba) {
		return nil, formatErr(off+gptMyLBAOff, "GPT header", ErrBadTable, h.MyLBA, "MyLBA does not match the header's location %d", lba)
	}
	if h.SizeOfPartitionEntry < gptEntryMinSize || h.SizeOfPartitionEntry%gptEntryMinSize != 0 {
		return nil, formatErr(off+gptEntrySizeOff, "GPT header", ErrBadTable, h.SizeOfPartitionEntry, "bad partition entry size")
	}
	arrayBytes := uint64(h.NumberOfPartitionEntries) * uint64(h.SizeOfPartitionEntry)
	if arrayBytes > gptMaxEntryArrayBytes {
		return nil, formatErr(off+gptNumEntriesOff, "GPT header", ErrBadTable, h.NumberOfPartitionEntries, "partition entry array of %d bytes is implausibly large", arrayBytes)
	}
	if h.PartitionEntryLBA > uint64(size/ss) {
		return nil, formatErr(off+gptEntryLBAOff, "GPT header", ErrTruncated, h.PartitionEntryLBA, "partition entry array lies past the disk")
	}
	arrOff := int64(h.PartitionEntryLBA) * ss
	arr := make([]byte, arrayBytes)
	if err := readFull(r, size, arr, arrOff, "GPT partition entry array"); err != nil {
		return nil, err
	}
	if got := crc32.ChecksumIEEE(arr); got != h.PartitionEntryArrayCRC32 {
		return nil, formatErr(off+gptEntriesCRCOff, "GPT header", ErrChecksum, h.PartitionEntryArrayCRC32, "partition entry array CRC32 is 0x%08x, computed 0x%08x", h.PartitionEntryArrayCRC32, got)
	}
	tab := &Table{Scheme: SchemeGPT, SectorSize: ss}
	for i := 0; i < int(h.NumberOfPartitionEntries); i++ {
		eOff := i * int(h.SizeOfPartitionEntry)
		e := arr[eOff : eOff+gptEntryMinSize]
		var typ GUID
		copy(typ[:], e[gptEntryTypeOff:])
		if typ == (GUID{}) {
			continue
		}
		first, last := le64(e[gptEntryStartOff:]), le64(e[gptEntryEndOff:])
		abs := arrOff + int64(eOff)
		if last < first || last >= uint64(size/ss) {
			return nil, formatErr(abs+gptEntryEndOff, "GPT partition entry", ErrTruncated, last,
				"partition %d spans LBAs %d-%d, outside the disk of %d sectors", i+1, first, last, size/ss)
		}
		p := Partition{
			Index:    i + 1,
			Start:    int64(first) * ss,
			Size:     int64(last-first+1) * ss,
			TypeGUID: typ,
			Name:     decodeName(e[gptEntryNameOff : gptEntryNameOff+gptEntryNameBytes]),
			Bootable: le64(e[gptEntryAttrOff:])&gptAttrLegacyBootable != 0,
		}
		copy(p.GUID[:], e[gptEntryGUIDOff:])
		tab.Partitions = append(tab.Partitions, p)
	}
	return tab, nil
}

func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := le16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
