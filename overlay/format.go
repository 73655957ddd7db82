// On-disk structures of the overlay file; the package documentation (doc.go)
// draws the layout and the commit protocol that orders their writes.

package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// On-disk constants; the layout is described in the package documentation.
const (
	headerMagic   = "KVMIFYOV"
	rootMagic     = "KVMROOT2"
	mapMagic      = "KVMMAP02"
	formatVersion = 2

	headerOffset = 0x0000
	rootAOffset  = 0x1000
	rootBOffset  = 0x2000
	// rootCopyStride separates the two copies of a root in its 4 KiB
	// sector: each copy has a 512-byte device sector of its own, so damage
	// to one sector leaves the other copy, and a write torn at sector
	// granularity leaves each copy wholly old or wholly new.
	rootCopyStride = 0x200
	rootCopies     = 2
	rootRegionSize = (rootCopies-1)*rootCopyStride + rootSize // bytes a root location's copies span
	dataOffset     = 0x10000                                  // first slot; leaves room for the header and both roots

	// sumSize is the granule of the data checksums: each sumSize bytes of
	// a slot have their own CRC-32C, so a 4 KiB read verifies 4 KiB, not
	// the whole block, and an aligned in-place write needs no read.
	sumSize = 4 << 10

	defaultBlockSize = 64 << 10
	minBlockSize     = 4 << 10
	maxBlockSize     = 1 << 20

	// maxBlocks bounds the virtual block numbers a map entry can hold.
	maxBlocks = math.MaxUint32

	// Block map values: 0 means "not in the overlay" and is never stored.
	valueUnmapped = 0
	valueZero     = 1
	valueSlotBase = 2 // value = slot + valueSlotBase
	maxSlot       = math.MaxUint32 - valueSlotBase

	maxMetaKeyLen   = 1 << 10
	maxMetaValueLen = 16 << 20
	maxMetaEntries  = 1 << 12
	maxMetaTotal    = 64 << 20 // all keys and values together
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// rawHeader is the overlay file's first structure.
type rawHeader struct {
	Magic        [8]byte
	Version      uint32
	BlockSize    uint32
	SourceSize   uint64
	Fingerprint  [32]byte // sha256 of the source's size and samples (fingerprint.go)
	DataOffset   uint64
	SumSize      uint32 // bytes covered by each data checksum
	Flags        uint32
	SourceSHA256 [32]byte // sha256 of the whole source, if flagFullHash
	HeaderCRC    uint32   // CRC-32C of the bytes before it
}

// Header flags.
const (
	flagFullHash = 1 << 0 // SourceSHA256 holds the whole source's sha256
	knownFlags   = flagFullHash
)

// Field offsets in rawHeader's encoding.
const (
	hdrMagicOff        = 0
	hdrVersionOff      = 8
	hdrBlockSizeOff    = 12
	hdrSourceSizeOff   = 16
	hdrFingerprintOff  = 24
	hdrDataOffsetOff   = 56
	hdrSumSizeOff      = 64
	hdrFlagsOff        = 68
	hdrSourceSHA256Off = 72
	hdrCRCOff          = 104
	headerSize         = 108

	// Version 1's header ended after DataOffset with its CRC.
	v1HeaderCRCOff = 64
	v1HeaderSize   = 68
)

func (h *rawHeader) encode() []byte {
	b := make([]byte, headerSize)
	copy(b[hdrMagicOff:], h.Magic[:])
	binary.LittleEndian.PutUint32(b[hdrVersionOff:], h.Version)
	binary.LittleEndian.PutUint32(b[hdrBlockSizeOff:], h.BlockSize)
	binary.LittleEndian.PutUint64(b[hdrSourceSizeOff:], h.SourceSize)
	copy(b[hdrFingerprintOff:], h.Fingerprint[:])
	binary.LittleEndian.PutUint64(b[hdrDataOffsetOff:], h.DataOffset)
	binary.LittleEndian.PutUint32(b[hdrSumSizeOff:], h.SumSize)
	binary.LittleEndian.PutUint32(b[hdrFlagsOff:], h.Flags)
	copy(b[hdrSourceSHA256Off:], h.SourceSHA256[:])
	h.HeaderCRC = crc32.Checksum(b[:hdrCRCOff], crcTable)
	binary.LittleEndian.PutUint32(b[hdrCRCOff:], h.HeaderCRC)
	return b
}

// decodeHeader parses and validates the header in b (read from headerOffset).
func decodeHeader(b []byte) (*rawHeader, error) {
	var h rawHeader
	copy(h.Magic[:], b)
	if len(b) >= len(headerMagic) && string(h.Magic[:]) != headerMagic {
		return nil, formatErr(headerOffset+hdrMagicOff, "header", "bad magic", fmt.Sprintf("%q", h.Magic[:]), ErrNotOverlay)
	}
	// A version 1 header is shorter, with its CRC at v1HeaderCRCOff: when
	// that CRC holds, name the version rather than report a checksum
	// failure (a damaged version field fails both CRCs).
	if len(b) >= v1HeaderSize && binary.LittleEndian.Uint32(b[hdrVersionOff:]) == 1 &&
		crc32.Checksum(b[:v1HeaderCRCOff], crcTable) == binary.LittleEndian.Uint32(b[v1HeaderCRCOff:]) {
		return nil, formatErr(headerOffset+hdrVersionOff, "header",
			fmt.Sprintf("overlay format version 1 (kvmify before per-block checksums) is not read by this kvmify, which reads version %d; export it with the kvmify that made it", formatVersion), 1, ErrUnsupportedVersion)
	}
	if len(b) < headerSize {
		return nil, formatErr(headerOffset, "header", "file too short for the header", len(b), ErrNotOverlay)
	}
	h.Version = binary.LittleEndian.Uint32(b[hdrVersionOff:])
	h.BlockSize = binary.LittleEndian.Uint32(b[hdrBlockSizeOff:])
	h.SourceSize = binary.LittleEndian.Uint64(b[hdrSourceSizeOff:])
	copy(h.Fingerprint[:], b[hdrFingerprintOff:])
	h.DataOffset = binary.LittleEndian.Uint64(b[hdrDataOffsetOff:])
	h.SumSize = binary.LittleEndian.Uint32(b[hdrSumSizeOff:])
	h.Flags = binary.LittleEndian.Uint32(b[hdrFlagsOff:])
	copy(h.SourceSHA256[:], b[hdrSourceSHA256Off:])
	h.HeaderCRC = binary.LittleEndian.Uint32(b[hdrCRCOff:])
	if sum := crc32.Checksum(b[:hdrCRCOff], crcTable); sum != h.HeaderCRC {
		return nil, formatErr(headerOffset+hdrCRCOff, "header", fmt.Sprintf("CRC mismatch (computed 0x%08x)", sum), h.HeaderCRC, ErrChecksum)
	}
	if h.Version != formatVersion {
		return nil, formatErr(headerOffset+hdrVersionOff, "header", "unsupported version", h.Version, ErrUnsupportedVersion)
	}
	if h.BlockSize < minBlockSize || h.BlockSize > maxBlockSize || h.BlockSize&(h.BlockSize-1) != 0 {
		return nil, formatErr(headerOffset+hdrBlockSizeOff, "header", "block size not a power of two in [4 KiB, 1 MiB]", h.BlockSize, ErrCorrupt)
	}
	if h.SumSize != sumSize {
		return nil, formatErr(headerOffset+hdrSumSizeOff, "header", "unexpected checksum granule", h.SumSize, ErrCorrupt)
	}
	if h.Flags&^knownFlags != 0 {
		return nil, formatErr(headerOffset+hdrFlagsOff, "header", "unknown flags", fmt.Sprintf("0x%x", h.Flags), ErrUnsupportedVersion)
	}
	if h.DataOffset != dataOffset {
		return nil, formatErr(headerOffset+hdrDataOffsetOff, "header", "unexpected data offset", h.DataOffset, ErrCorrupt)
	}
	if h.SourceSize > math.MaxInt64 || blockCount(int64(h.SourceSize), int(h.BlockSize)) > maxBlocks {
		return nil, formatErr(headerOffset+hdrSourceSizeOff, "header", "source size too large", h.SourceSize, ErrCorrupt)
	}
	return &h, nil
}

// rawRoot is one of the two commit roots.
type rawRoot struct {
	Magic      [8]byte
	Generation uint64
	MapOffset  uint64 // absolute offset of the map record; 0 with MapLength 0 means an empty map
	MapLength  uint64
	MapCRC     uint32 // CRC-32C of the whole map record
	RootCRC    uint32 // CRC-32C of the bytes before it
}

// Field offsets in rawRoot's encoding.
const (
	rootMagicOff      = 0
	rootGenerationOff = 8
	rootMapOffsetOff  = 16
	rootMapLengthOff  = 24
	rootMapCRCOff     = 32
	rootCRCOff        = 36
	rootSize          = 40
)

func (r *rawRoot) encode() []byte {
	b := make([]byte, rootSize)
	copy(b[rootMagicOff:], rootMagic)
	binary.LittleEndian.PutUint64(b[rootGenerationOff:], r.Generation)
	binary.LittleEndian.PutUint64(b[rootMapOffsetOff:], r.MapOffset)
	binary.LittleEndian.PutUint64(b[rootMapLengthOff:], r.MapLength)
	binary.LittleEndian.PutUint32(b[rootMapCRCOff:], r.MapCRC)
	r.RootCRC = crc32.Checksum(b[:rootCRCOff], crcTable)
	binary.LittleEndian.PutUint32(b[rootCRCOff:], r.RootCRC)
	return b
}

// encodeCopies encodes the root's sector: both copies, rootCopyStride apart.
func (r *rawRoot) encodeCopies() []byte {
	b := make([]byte, rootRegionSize)
	one := r.encode()
	for i := range rootCopies {
		copy(b[i*rootCopyStride:], one)
	}
	return b
}

// decodeRoot parses a root read from off; a root that was never written or
// was torn fails with ErrChecksum or ErrNotOverlay.
func decodeRoot(b []byte, off int64) (*rawRoot, error) {
	if len(b) < rootSize {
		return nil, formatErr(off, "commit root", "file too short for the root", len(b), ErrCorrupt)
	}
	var r rawRoot
	copy(r.Magic[:], b[rootMagicOff:])
	if string(r.Magic[:]) != rootMagic {
		return nil, formatErr(off+rootMagicOff, "commit root", "bad magic", string(r.Magic[:]), ErrCorrupt)
	}
	r.Generation = binary.LittleEndian.Uint64(b[rootGenerationOff:])
	r.MapOffset = binary.LittleEndian.Uint64(b[rootMapOffsetOff:])
	r.MapLength = binary.LittleEndian.Uint64(b[rootMapLengthOff:])
	r.MapCRC = binary.LittleEndian.Uint32(b[rootMapCRCOff:])
	r.RootCRC = binary.LittleEndian.Uint32(b[rootCRCOff:])
	if sum := crc32.Checksum(b[:rootCRCOff], crcTable); sum != r.RootCRC {
		return nil, formatErr(off+rootCRCOff, "commit root", fmt.Sprintf("CRC mismatch (computed 0x%08x)", sum), r.RootCRC, ErrChecksum)
	}
	return &r, nil
}

// Map record layout: a fixed part, EntryCount entries, then MetaCount
// metadata items, each a KeyLen/ValueLen pair followed by the bytes. An
// entry whose value names a slot is followed by the CRC-32C of each sumSize
// bytes of that slot (blockSize/sumSize of them).
const (
	mapMagicOff      = 0
	mapGenerationOff = 8
	mapEntryCountOff = 16
	mapMetaCountOff  = 24
	mapFixedSize     = 32

	mapEntrySize    = 8 // VBlock uint32, Value uint32
	mapSumSize      = 4 // one CRC-32C
	mapMetaHdrSize  = 6 // KeyLen uint16, ValueLen uint32
	mapEntryVBlock  = 0
	mapEntryValue   = 4
	metaKeyLenOff   = 0
	metaValueLenOff = 2
)

// mapEntry is one map record entry: a virtual block and its value.
type mapEntry struct {
	VBlock uint32
	Value  uint32
}

// mapRecord is a decoded map record.
type mapRecord struct {
	Generation uint64
	Entries    []mapEntry
	// Sums holds the checksums of the entries that name a slot, in entry
	// order, sumsPerBlock of them each.
	Sums []uint32
	Meta map[string][]byte
}

// encodeMap serialises the map record of generation gen: the count entries
// (dataCount of them naming a slot) that each yields in block order, each
// slot's spb checksums as sums gives them, then meta in the order of keys.
func encodeMap(gen uint64, count, dataCount, spb int, each func(func(mapEntry)), sums func(slot int64) []uint32, meta map[string][]byte, keys []string) []byte {
	n := mapFixedSize + count*mapEntrySize + dataCount*spb*mapSumSize
	for _, k := range keys {
		n += mapMetaHdrSize + len(k) + len(meta[k])
	}
	b := make([]byte, n)
	copy(b[mapMagicOff:], mapMagic)
	binary.LittleEndian.PutUint64(b[mapGenerationOff:], gen)
	binary.LittleEndian.PutUint64(b[mapEntryCountOff:], uint64(count))
	binary.LittleEndian.PutUint32(b[mapMetaCountOff:], uint32(len(keys)))
	p := b[mapFixedSize:]
	each(func(e mapEntry) {
		binary.LittleEndian.PutUint32(p[mapEntryVBlock:], e.VBlock)
		binary.LittleEndian.PutUint32(p[mapEntryValue:], e.Value)
		p = p[mapEntrySize:]
		if e.Value >= valueSlotBase {
			for _, c := range sums(int64(e.Value - valueSlotBase)) {
				binary.LittleEndian.PutUint32(p, c)
				p = p[mapSumSize:]
			}
		}
	})
	for _, k := range keys {
		v := meta[k]
		binary.LittleEndian.PutUint16(p[metaKeyLenOff:], uint16(len(k)))
		binary.LittleEndian.PutUint32(p[metaValueLenOff:], uint32(len(v)))
		p = p[mapMetaHdrSize:]
		p = p[copy(p, k):]
		p = p[copy(p, v):]
	}
	return b
}

// decodeMap parses and validates a map record read from off: every entry's
// block must lie below nblocks, in strictly increasing order, and every slot
// below nslots and referenced once; each slot entry carries spb checksums.
func decodeMap(b []byte, off int64, root *rawRoot, nblocks, nslots int64, spb int) (*mapRecord, error) {
	const st = "map record"
	if sum := crc32.Checksum(b, crcTable); sum != root.MapCRC {
		return nil, formatErr(off, st, fmt.Sprintf("CRC mismatch (root says 0x%08x)", root.MapCRC), sum, ErrChecksum)
	}
	if len(b) < mapFixedSize {
		return nil, formatErr(off, st, "shorter than its fixed part", len(b), ErrCorrupt)
	}
	if string(b[mapMagicOff:mapMagicOff+len(mapMagic)]) != mapMagic {
		return nil, formatErr(off+mapMagicOff, st, "bad magic", string(b[:len(mapMagic)]), ErrCorrupt)
	}
	rec := &mapRecord{Generation: binary.LittleEndian.Uint64(b[mapGenerationOff:])}
	if rec.Generation != root.Generation {
		return nil, formatErr(off+mapGenerationOff, st, fmt.Sprintf("generation differs from its root's %d", root.Generation), rec.Generation, ErrCorrupt)
	}
	count := binary.LittleEndian.Uint64(b[mapEntryCountOff:])
	metaCount := binary.LittleEndian.Uint32(b[mapMetaCountOff:])
	rest := uint64(len(b) - mapFixedSize)
	if count > rest/mapEntrySize || count > uint64(nblocks) {
		return nil, formatErr(off+mapEntryCountOff, st, "entry count exceeds the record or the disk", count, ErrCorrupt)
	}
	if metaCount > maxMetaEntries {
		return nil, formatErr(off+mapMetaCountOff, st, "too many metadata items", metaCount, ErrCorrupt)
	}
	rec.Entries = make([]mapEntry, count)
	seen := newBitmap(0)
	p := b[mapFixedSize:]
	pos := off + mapFixedSize
	sumBytes := spb * mapSumSize
	for i := range rec.Entries {
		if len(p) < mapEntrySize {
			return nil, formatErr(pos, st, "entry truncated", len(p), ErrCorrupt)
		}
		e := mapEntry{
			VBlock: binary.LittleEndian.Uint32(p[mapEntryVBlock:]),
			Value:  binary.LittleEndian.Uint32(p[mapEntryValue:]),
		}
		switch {
		case int64(e.VBlock) >= nblocks:
			return nil, formatErr(pos+mapEntryVBlock, st, "block beyond the source", e.VBlock, ErrCorrupt)
		case i > 0 && e.VBlock <= rec.Entries[i-1].VBlock:
			return nil, formatErr(pos+mapEntryVBlock, st, "blocks not strictly increasing", e.VBlock, ErrCorrupt)
		case e.Value == valueUnmapped:
			return nil, formatErr(pos+mapEntryValue, st, "unmapped value stored", e.Value, ErrCorrupt)
		case e.Value >= valueSlotBase:
			slot := int64(e.Value - valueSlotBase)
			if slot >= nslots {
				return nil, formatErr(pos+mapEntryValue, st, "slot beyond the end of the file", slot, ErrCorrupt)
			}
			if seen.get(slot) {
				return nil, formatErr(pos+mapEntryValue, st, "slot referenced twice", slot, ErrCorrupt)
			}
			seen.set(slot)
			if len(p) < mapEntrySize+sumBytes {
				return nil, formatErr(pos+mapEntrySize, st, "block checksums truncated", len(p)-mapEntrySize, ErrCorrupt)
			}
			for j := range spb {
				rec.Sums = append(rec.Sums, binary.LittleEndian.Uint32(p[mapEntrySize+j*mapSumSize:]))
			}
			p = p[sumBytes:]
			pos += int64(sumBytes)
		}
		rec.Entries[i] = e
		p = p[mapEntrySize:]
		pos += mapEntrySize
	}
	rec.Meta = make(map[string][]byte, metaCount)
	for range metaCount {
		if len(p) < mapMetaHdrSize {
			return nil, formatErr(pos, st, "metadata item truncated", len(p), ErrCorrupt)
		}
		kl := int(binary.LittleEndian.Uint16(p[metaKeyLenOff:]))
		vl := uint64(binary.LittleEndian.Uint32(p[metaValueLenOff:]))
		p = p[mapMetaHdrSize:]
		if kl == 0 || kl > maxMetaKeyLen || vl > maxMetaValueLen || uint64(kl)+vl > uint64(len(p)) {
			return nil, formatErr(pos, st, "metadata item length out of range", [2]uint64{uint64(kl), vl}, ErrCorrupt)
		}
		k := string(p[:kl])
		if _, dup := rec.Meta[k]; dup {
			return nil, formatErr(pos, st, "duplicate metadata key", k, ErrCorrupt)
		}
		rec.Meta[k] = append([]byte(nil), p[kl:uint64(kl)+vl]...)
		p = p[uint64(kl)+vl:]
		pos += mapMetaHdrSize + int64(kl) + int64(vl)
	}
	if len(p) != 0 {
		return nil, formatErr(pos, st, "trailing bytes after the last item", len(p), ErrCorrupt)
	}
	return rec, nil
}

// maxMapLength bounds a map record for a disk of nblocks blocks: every
// block listed plus the largest metadata allowed.
func maxMapLength(nblocks int64, spb int) uint64 {
	return mapFixedSize + uint64(nblocks)*(mapEntrySize+uint64(spb)*mapSumSize) + maxMetaEntries*mapMetaHdrSize + maxMetaTotal
}

// blockCount is the number of blockSize blocks that cover size bytes.
func blockCount(size int64, blockSize int) int64 {
	return (size + int64(blockSize) - 1) / int64(blockSize)
}

// Sentinel errors, matched with errors.Is.
var (
	ErrNotOverlay         = errors.New("not a kvmify overlay file")
	ErrUnsupportedVersion = errors.New("unsupported overlay version")
	ErrChecksum           = errors.New("overlay checksum mismatch")
	ErrCorrupt            = errors.New("overlay file is corrupt")
	ErrSourceMismatch     = errors.New("overlay belongs to a different source")
	ErrSameAsSource       = errors.New("overlay path is the source image itself")
	ErrLocked             = errors.New("overlay is in use by another process")
	ErrClosed             = errors.New("overlay is closed")
	// ErrDataChecksum classifies a DataError: stored block data that no
	// longer matches the checksum recorded when it was written.
	ErrDataChecksum = errors.New("overlay block data fails its checksum")
	// ErrCommitDamaged classifies a CommitError: the newest commit cannot be
	// read, and only an explicit acceptance of an older one opens the file.
	ErrCommitDamaged = errors.New("overlay's newest commit is damaged")
)

// DataError reports overlay data that fails its checksum: which virtual
// block, where it is stored, and the two checksums. The data is never
// returned.
type DataError struct {
	Path       string // the overlay file
	Block      int64  // virtual block number
	DiskOffset int64  // disk byte offset of the failing checksum granule
	Slot       int64  // slot holding the block
	FileOffset int64  // overlay file byte offset of the failing granule
	Want, Got  uint32 // recorded and computed CRC-32C
}

func (e *DataError) Error() string {
	return fmt.Sprintf("overlay %s: block %d (disk bytes %d..%d): stored data in slot %d at file byte %d (0x%x) fails its CRC-32C (recorded 0x%08x, read 0x%08x); not serving it",
		e.Path, e.Block, e.DiskOffset, e.DiskOffset+sumSize-1, e.Slot, e.FileOffset, e.FileOffset, e.Want, e.Got)
}

// Unwrap returns ErrDataChecksum.
func (e *DataError) Unwrap() error { return ErrDataChecksum }

// CommitError reports a newest commit that cannot be read. Opening the
// overlay at an older generation would silently drop the writes flushed
// since, so it is refused unless that generation is accepted explicitly
// (Options.AcceptGeneration, Rollback).
type CommitError struct {
	Path string
	// Lost is the generation that accepting Fallback gives up: the newest
	// commit, or, when the damaged root cannot say which it held, the one
	// after Fallback (which may never have been completed).
	Lost uint64
	// Fallback is the newest generation whose root is intact, 0 if none.
	Fallback uint64
	Reason   error // what is damaged
}

func (e *CommitError) Error() string {
	s := fmt.Sprintf("overlay %s: %v; refusing to fall back silently, which would lose generation %d (and every write flushed with it)", e.Path, e.Reason, e.Lost)
	if e.Fallback == 0 {
		return s + "; no older commit is intact either"
	}
	return s + fmt.Sprintf("; to accept generation %d instead (every block it references is verified by checksum first), run: kvmify overlay rollback %s --to-generation %d", e.Fallback, e.Path, e.Fallback)
}

// Unwrap returns ErrCommitDamaged and the damage found.
func (e *CommitError) Unwrap() []error { return []error{ErrCommitDamaged, e.Reason} }

// FormatError reports a malformed overlay file: where, in which structure,
// and the offending value.
type FormatError struct {
	Offset    int64  // absolute byte offset in the overlay file
	Structure string // e.g. "header", "commit root", "map record"
	Msg       string
	Value     any // the offending value, if any
	Err       error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s at byte 0x%x: %s", e.Structure, e.Offset, e.Msg)
	if e.Value != nil {
		s += fmt.Sprintf(" (value %v)", e.Value)
	}
	return s
}

// Unwrap returns the sentinel classifying the error.
func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, structure, msg string, value any, sentinel error) error {
	return &FormatError{Offset: off, Structure: structure, Msg: msg, Value: value, Err: sentinel}
}
