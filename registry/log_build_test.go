package registry

import (
	"encoding/binary"
)

// Hand-built transaction logs, every field set from the format
// specification, so replay tests do not depend on kvmify's reader to make
// their inputs.

// logBaseSector returns the first sector of a log for primary: its base
// block with the given file type and both sequence numbers set to seq.
func logBaseSector(primary []byte, fileType, seq uint32) []byte {
	block := make([]byte, BaseBlockSize)
	copy(block, primary[:logSectorSize])
	le := binary.LittleEndian
	le.PutUint32(block[regfPrimarySequenceOffset:], seq)
	le.PutUint32(block[regfSecondarySequenceOffset:], seq)
	le.PutUint32(block[regfFileTypeOffset:], fileType)
	le.PutUint32(block[regfChecksumOffset:], BaseBlockChecksum(block))
	return block[:logSectorSize]
}

// resumLogSector recomputes the checksum of a log's base block copy after a
// test changed one of its fields.
func resumLogSector(log []byte) {
	block := make([]byte, BaseBlockSize)
	copy(block, log[:logSectorSize])
	binary.LittleEndian.PutUint32(log[regfChecksumOffset:], BaseBlockChecksum(block))
}

// synthPage is a page a synthetic HvLE entry writes.
type synthPage struct {
	offset uint32 // relative to the first hive bin
	data   []byte
}

// synthEntry describes one synthetic HvLE entry.
type synthEntry struct {
	sequence  uint32
	hbinsSize uint32
	flags     uint32
	pages     []synthPage
}

// hvleBytes encodes an entry, padded to a sector, with correct hashes.
func hvleBytes(e synthEntry) []byte {
	le := binary.LittleEndian
	size := hvleHeaderSize + len(e.pages)*dirtyPageRefSize
	for _, p := range e.pages {
		size += len(p.data)
	}
	size = (size + logSectorSize - 1) / logSectorSize * logSectorSize
	b := make([]byte, size)
	copy(b[hvleSignatureOffset:], hvleSignature[:])
	le.PutUint32(b[hvleSizeOffset:], uint32(size))
	le.PutUint32(b[hvleFlagsOffset:], e.flags)
	le.PutUint32(b[hvleSequenceOffset:], e.sequence)
	le.PutUint32(b[hvleHiveBinsDataSizeOffset:], e.hbinsSize)
	le.PutUint32(b[hvleDirtyPagesCountOffset:], uint32(len(e.pages)))
	at := hvleHeaderSize + len(e.pages)*dirtyPageRefSize
	for i, p := range e.pages {
		ref := b[hvleHeaderSize+i*dirtyPageRefSize:]
		le.PutUint32(ref[dirtyPageRefOffsetOffset:], p.offset)
		le.PutUint32(ref[dirtyPageRefSizeOffset:], uint32(len(p.data)))
		copy(b[at:], p.data)
		at += len(p.data)
	}
	le.PutUint64(b[hvleHash1Offset:], Marvin32(logEntryHashSeed, b[hvleHeaderSize:]))
	le.PutUint64(b[hvleHash2Offset:], Marvin32(logEntryHashSeed, b[:hvleHash2Length]))
	return b
}

// newFormatLog builds a new-format log whose base block copy has sequence
// seq, followed by the entries in order.
func newFormatLog(primary []byte, seq uint32, entries ...synthEntry) []byte {
	log := logBaseSector(primary, FileTypeLogNew, seq)
	for _, e := range entries {
		log = append(log, hvleBytes(e)...)
	}
	return log
}

// oldFormatLog builds an old-format log for primary: the base block copy
// (sequence seq, hive bins data size hbinsSize), the dirty vector and the
// dirty 512-byte pages taken from image (a whole hive file).
func oldFormatLog(primary, image []byte, seq, hbinsSize uint32, dirty ...int) []byte {
	sector := logBaseSector(primary, FileTypeLog, seq)
	binary.LittleEndian.PutUint32(sector[regfHiveBinsDataSizeOffset:], hbinsSize)
	block := make([]byte, BaseBlockSize)
	copy(block, sector)
	binary.LittleEndian.PutUint32(sector[regfChecksumOffset:], BaseBlockChecksum(block))

	pages := int(hbinsSize / oldLogPageSize)
	bitmap := make([]byte, (pages+7)/8)
	for _, p := range dirty {
		bitmap[p/8] |= 1 << (p % 8)
	}
	log := append(sector, dirtSignature[:]...)
	log = append(log, bitmap...)
	for len(log)%logSectorSize != 0 {
		log = append(log, 0)
	}
	for p := range pages {
		if bitmap[p/8]&(1<<(p%8)) != 0 {
			log = append(log, image[BaseBlockSize+p*oldLogPageSize:][:oldLogPageSize]...)
		}
	}
	return log
}

// withSequences returns a copy of a hive file whose base block has the given
// sequence numbers and a valid checksum: a dirty primary when they differ.
func withSequences(hive []byte, primary, secondary uint32) []byte {
	out := append([]byte(nil), hive...)
	le := binary.LittleEndian
	le.PutUint32(out[regfPrimarySequenceOffset:], primary)
	le.PutUint32(out[regfSecondarySequenceOffset:], secondary)
	le.PutUint32(out[regfChecksumOffset:], BaseBlockChecksum(out))
	return out
}

// minimalWithStart returns the minimal hive with its Services\Start DWORD
// (stored inline in the vk) set to v.
func minimalWithStart(v uint32) []byte {
	h := minimalHive()
	binary.LittleEndian.PutUint32(h[BaseBlockSize+minVKDword+cellSizeFieldSize+vkDataOffset:], v)
	return h
}

// bins returns the hive bins data of a hive file built by minimalHive.
func bins(hive []byte) []byte { return hive[BaseBlockSize:] }
