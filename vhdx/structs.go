package vhdx

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"strings"
)

// Layout of the fixed structures ([MS-VHDX] 2.2).
const (
	fileIdentifierSig  = "vhdxfile"
	headerSig          = "head"
	regionTableSig     = "regi"
	metadataTableSig   = "metadata"
	header1Offset      = 64 << 10
	header2Offset      = 128 << 10
	headerSize         = 4 << 10
	regionTable1Offset = 192 << 10
	regionTable2Offset = 256 << 10
	regionTableSize    = 64 << 10
	regionEntrySize    = 32
	maxRegionEntries   = 2047
	metadataTableSize  = 64 << 10
	metadataEntrySize  = 32
	maxMetadataEntries = 2047
	// firstStructures is how much of the file holds the identifier,
	// both headers and both region tables.
	firstStructures = regionTable2Offset + regionTableSize
	mib             = 1 << 20
	maxVirtualSize  = 64 << 40 // 64 TiB, the format's limit
)

// Region and metadata item GUIDs.
var (
	guidBAT             = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	guidMetadata        = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	guidFileParameters  = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	guidVirtualDiskSize = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	guidLogicalSector   = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	guidPhysicalSector  = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	guidPage83          = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	guidParentLocator   = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// guid is a GUID in its on-disk byte order (the first three fields little
// endian).
type guid [16]byte

func mustGUID(s string) guid {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID literal " + s)
	}
	var g guid
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g
}

func (g guid) String() string {
	b := []byte{g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6]}
	b = append(b, g[8:]...)
	h := strings.ToUpper(hex.EncodeToString(b))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumOK verifies a structure whose CRC-32C sits at byte 4 and covers
// the whole structure with that field read as zero.
func checksumOK(b []byte) bool {
	want := binary.LittleEndian.Uint32(b[4:])
	c := crc32.Update(0, castagnoli, b[:4])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[8:])
	return c == want
}

// Sniff reports whether header (the first bytes of a file) is VHDX.
func Sniff(header []byte) bool { return bytes.HasPrefix(header, []byte(fileIdentifierSig)) }

// vhdxHeader is one of the two headers, with the specification's names.
type vhdxHeader struct {
	SequenceNumber uint64
	LogGuid        guid
	LogVersion     uint16
	Version        uint16
	LogLength      uint32
	LogOffset      uint64
}

func parseVHDXHeader(b []byte) (vhdxHeader, bool) {
	if string(b[:4]) != headerSig || !checksumOK(b[:headerSize]) {
		return vhdxHeader{}, false
	}
	le := binary.LittleEndian
	var h vhdxHeader
	h.SequenceNumber = le.Uint64(b[8:])
	copy(h.LogGuid[:], b[48:64])
	h.LogVersion = le.Uint16(b[64:])
	h.Version = le.Uint16(b[66:])
	h.LogLength = le.Uint32(b[68:])
	h.LogOffset = le.Uint64(b[72:])
	return h, true
}

// regionEntry is one region table entry.
type regionEntry struct {
	Guid       guid
	FileOffset uint64
	Length     uint32
	Required   bool
}

// metadataEntry is one metadata table entry.
type metadataEntry struct {
	ItemId     guid
	Offset     uint32
	Length     uint32
	IsUser     bool
	IsRequired bool
}
