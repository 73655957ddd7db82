package ewf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
)

// Layout of EWF-E01/S01 segment files, as libyal's "Expert Witness
// Compression Format" specification describes them. All integers are
// little-endian.
const (
	fileHeaderSize = 13 // signature[8] fields_start segment_number[2] fields_end[2]
	// sectionDescriptorSize: type[16] next[8] size[8] padding[40] checksum[4].
	sectionDescriptorSize = 76
	descriptorSumOffset   = 72

	volumeSizeE01     = 1052 // the EnCase volume (and disk, data) section
	volumeSizeS01     = 94   // the SMART volume section
	tableHeaderSize   = 24   // number_of_entries[4] padding[4] base_offset[8] padding[4] checksum[4]
	hashSectionSize   = 36   // md5[16] unknown[16] checksum[4]
	digestSectionSize = 80   // md5[16] sha1[20] padding[40] checksum[4]

	tableEntryCompressed = 1 << 31
	tableEntryOffsetMask = tableEntryCompressed - 1

	// maxSections bounds the section chain of one segment file: even a
	// 7.9 EiB segment of 16 KiB-entry tables stays far below it.
	maxSections = 1 << 24
	// maxTableEntries bounds one table; EnCase writes at most 16375 and
	// libewf at most 65534 (the table header's count is 32-bit).
	maxTableEntries = 1 << 20
	// maxChunkSize is the largest chunk ewfacquire can write
	// (32768 sectors of 4096 bytes).
	maxChunkSize = 32768 * 4096
)

// Signatures of the file header.
var (
	sigEVF = []byte("EVF\x09\x0d\x0a\xff\x00") // EWF-E01, EWF-S01
)

// fileHeader is a segment file's first 13 bytes.
type fileHeader struct {
	Signature     [8]byte
	FieldsStart   uint8
	SegmentNumber uint16
	FieldsEnd     uint16
}

// sectionDescriptor is the raw 76-byte header of every section; Next and
// Size are byte offsets and lengths within the segment file, Size counting
// the descriptor itself.
type sectionDescriptor struct {
	Type     [16]byte
	Next     uint64
	Size     uint64
	Padding  [40]byte
	Checksum uint32
}

// section is one section of a segment file as the chain names it.
type section struct {
	Type  string
	Start int64 // the descriptor's offset
	End   int64 // where the section's data ends
	Next  int64
}

// dataStart is where the section's data follows its descriptor.
func (s section) dataStart() int64 { return s.Start + sectionDescriptorSize }

// readFull reads len(p) bytes at off of r (a file of size bytes) or
// returns a FormatError naming what was being read.
func readFull(r io.ReaderAt, path string, size int64, p []byte, off int64, what string) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return &FormatError{Path: path, Offset: off, What: what,
			Msg: fmt.Sprintf("%d bytes needed but the file ends at byte %d", len(p), size), Err: ErrTruncated}
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = ErrTruncated
	}
	return &FormatError{Path: path, Offset: off + int64(n), What: what, Err: err}
}

// parseFileHeader checks a segment file's header and returns its segment
// number.
func parseFileHeader(r io.ReaderAt, path string, size int64) (int, error) {
	var b [fileHeaderSize]byte
	if err := readFull(r, path, size, b[:], 0, "file header"); err != nil {
		return 0, err
	}
	var h fileHeader
	binary.Read(bytes.NewReader(b[:]), binary.LittleEndian, &h)
	if !bytes.Equal(h.Signature[:], sigEVF) {
		return 0, &FormatError{Path: path, What: "file header", Msg: fmt.Sprintf("signature %q is not EWF-E01's", h.Signature[:]), Err: ErrFormat}
	}
	if h.FieldsStart != 1 || h.FieldsEnd != 0 || h.SegmentNumber == 0 {
		return 0, &FormatError{Path: path, What: "file header",
			Msg: fmt.Sprintf("fields start %d, segment number %d, fields end %d", h.FieldsStart, h.SegmentNumber, h.FieldsEnd), Err: ErrFormat}
	}
	return int(h.SegmentNumber), nil
}

// parseSections walks a segment file's section chain from its header to
// its "next" or "done" section, checking every descriptor's checksum and
// that every section lies within the file and after the one before.
func parseSections(r io.ReaderAt, path string, size int64) ([]section, error) {
	var out []section
	off := int64(fileHeaderSize)
	var b [sectionDescriptorSize]byte
	for len(out) < maxSections {
		if err := readFull(r, path, size, b[:], off, "section descriptor"); err != nil {
			return nil, err
		}
		var d sectionDescriptor
		binary.Read(bytes.NewReader(b[:]), binary.LittleEndian, &d)
		if sum := adler32.Checksum(b[:descriptorSumOffset]); sum != d.Checksum {
			return nil, &FormatError{Path: path, Offset: off, What: "section descriptor",
				Msg: fmt.Sprintf("stored Adler-32 %#08x, computed %#08x", d.Checksum, sum), Err: ErrChecksum}
		}
		typ := string(bytes.TrimRight(d.Type[:], "\x00"))
		s := section{Type: typ, Start: off, Next: int64(d.Next)}
		if d.Next > uint64(size) || d.Size > uint64(size) {
			return nil, &FormatError{Path: path, Offset: off, What: typ + " section",
				Msg: fmt.Sprintf("next section at byte %d, size %d, past the file's end at %d", d.Next, d.Size, size), Err: ErrTruncated}
		}
		s.End = off + int64(d.Size)
		if typ == "done" || typ == "next" {
			// The last section names itself as the next one.
			s.End = max(s.End, off+sectionDescriptorSize)
			out = append(out, s)
			return out, nil
		}
		if s.Next <= off || s.Next < off+sectionDescriptorSize {
			return nil, &FormatError{Path: path, Offset: off, What: typ + " section",
				Msg: fmt.Sprintf("next section at byte %d does not follow this one", d.Next), Err: ErrFormat}
		}
		if d.Size < sectionDescriptorSize || s.End > s.Next {
			// The data must end where the next section starts or before.
			s.End = s.Next
		}
		out = append(out, s)
		off = s.Next
	}
	return nil, &FormatError{Path: path, Offset: off, What: "section chain", Msg: "too many sections", Err: ErrFormat}
}

// sectionData reads a section's data (after its descriptor), checking it
// is at least min bytes long.
func sectionData(r io.ReaderAt, path string, size int64, s section, min int) ([]byte, error) {
	n := s.End - s.dataStart()
	if n < int64(min) {
		return nil, &FormatError{Path: path, Offset: s.Start, What: s.Type + " section",
			Msg: fmt.Sprintf("%d data bytes, at least %d needed", n, min), Err: ErrFormat}
	}
	b := make([]byte, min)
	if err := readFull(r, path, size, b, s.dataStart(), s.Type+" section"); err != nil {
		return nil, err
	}
	return b, nil
}

// checkSum verifies the Adler-32 stored little-endian after b[:n].
func checkSum(path string, off int64, what string, b []byte, n int) error {
	stored := binary.LittleEndian.Uint32(b[n:])
	if sum := adler32.Checksum(b[:n]); sum != stored {
		return &FormatError{Path: path, Offset: off, What: what,
			Msg: fmt.Sprintf("stored Adler-32 %#08x, computed %#08x", stored, sum), Err: ErrChecksum}
	}
	return nil
}

// Media describes the acquired medium, from the volume section.
type Media struct {
	ChunkCount      uint32
	SectorsPerChunk uint32
	BytesPerSector  uint32
	SectorCount     uint64
}

// ChunkSize is the bytes of media in one chunk.
func (m Media) ChunkSize() int64 { return int64(m.SectorsPerChunk) * int64(m.BytesPerSector) }

// Size is the media's length in bytes.
func (m Media) Size() int64 { return int64(m.SectorCount) * int64(m.BytesPerSector) }

// parseVolume reads a volume, disk or data section: the EnCase layout of
// 1052 bytes or the SMART one of 94.
func parseVolume(r io.ReaderAt, path string, size int64, s section) (Media, error) {
	var m Media
	what := s.Type + " section"
	n := s.End - s.dataStart()
	layout := volumeSizeE01
	if n < volumeSizeE01 {
		layout = volumeSizeS01
	}
	b, err := sectionData(r, path, size, s, layout)
	if err != nil {
		return m, err
	}
	if err := checkSum(path, s.dataStart(), what, b, layout-4); err != nil {
		return m, err
	}
	m.ChunkCount = binary.LittleEndian.Uint32(b[4:])
	m.SectorsPerChunk = binary.LittleEndian.Uint32(b[8:])
	m.BytesPerSector = binary.LittleEndian.Uint32(b[12:])
	if layout == volumeSizeE01 {
		m.SectorCount = binary.LittleEndian.Uint64(b[16:])
	} else {
		m.SectorCount = uint64(binary.LittleEndian.Uint32(b[16:]))
	}
	switch {
	case m.BytesPerSector == 0 || m.BytesPerSector%512 != 0 || m.BytesPerSector > 4096:
		return m, &FormatError{Path: path, Offset: s.dataStart() + 12, What: what, Msg: fmt.Sprintf("bytes per sector %d", m.BytesPerSector), Err: ErrFormat}
	case m.SectorsPerChunk == 0 || m.ChunkSize() > maxChunkSize:
		return m, &FormatError{Path: path, Offset: s.dataStart() + 8, What: what, Msg: fmt.Sprintf("sectors per chunk %d", m.SectorsPerChunk), Err: ErrFormat}
	case m.SectorCount > 1<<62/uint64(m.BytesPerSector):
		return m, &FormatError{Path: path, Offset: s.dataStart() + 16, What: what, Msg: fmt.Sprintf("sector count %d", m.SectorCount), Err: ErrFormat}
	}
	return m, nil
}

// table is one table (or table2) section: chunk offsets in one segment
// file. The entries stay packed (4 bytes a chunk) so a terabyte image
// needs no per-chunk structs.
type table struct {
	Base    int64    // offsets are relative to it
	Entries []uint32 // high bit: compressed; low 31 bits: offset from Base
	DataEnd int64    // where the last chunk's data ends
	Offset  int64    // the table section's descriptor, for errors
}

// parseTable reads a table or table2 section, checking the header's and
// the entries' Adler-32 checksums and that the offsets ascend.
func parseTable(r io.ReaderAt, path string, size int64, s section) (*table, error) {
	what := s.Type + " section"
	h, err := sectionData(r, path, size, s, tableHeaderSize)
	if err != nil {
		return nil, err
	}
	if err := checkSum(path, s.dataStart(), what+" header", h, tableHeaderSize-4); err != nil {
		return nil, err
	}
	count := binary.LittleEndian.Uint32(h[0:])
	t := &table{Base: int64(binary.LittleEndian.Uint64(h[8:])), Offset: s.Start}
	room := (s.End - s.dataStart() - tableHeaderSize) / 4
	if count == 0 || count > maxTableEntries || int64(count) > room {
		return nil, &FormatError{Path: path, Offset: s.dataStart(), What: what,
			Msg: fmt.Sprintf("%d entries where %d fit", count, room), Err: ErrFormat}
	}
	if t.Base < 0 || t.Base > size {
		return nil, &FormatError{Path: path, Offset: s.dataStart() + 8, What: what, Msg: fmt.Sprintf("base offset %d", t.Base), Err: ErrFormat}
	}
	n := int(count) * 4
	buf := make([]byte, n+4)
	if int64(count) == room {
		buf = buf[:n]
	}
	entriesAt := s.dataStart() + tableHeaderSize
	if err := readFull(r, path, size, buf, entriesAt, what+" entries"); err != nil {
		return nil, err
	}
	// EnCase 2 and later store the entries' Adler-32 after them; EnCase 1
	// and SMART put the first chunk there instead.
	firstChunk := t.Base + int64(binary.LittleEndian.Uint32(buf)&tableEntryOffsetMask)
	if len(buf) > n && firstChunk != entriesAt+int64(n) {
		if err := checkSum(path, entriesAt, what+" entries", buf, n); err != nil {
			return nil, err
		}
	}
	t.Entries = make([]uint32, count)
	prev := int64(-1)
	for i := range t.Entries {
		e := binary.LittleEndian.Uint32(buf[4*i:])
		o := int64(e & tableEntryOffsetMask)
		if o <= prev {
			// EnCase 6.7 lets offsets pass 2 GiB in a segment by dropping the
			// compressed bit's meaning; kvmify does not read such segments.
			return nil, &FormatError{Path: path, Offset: entriesAt + int64(4*i), What: what,
				Msg: fmt.Sprintf("entry %d's offset %d does not follow %d", i, o, prev), Err: ErrFormat}
		}
		if t.Base+o >= size {
			return nil, &FormatError{Path: path, Offset: entriesAt + int64(4*i), What: what,
				Msg: fmt.Sprintf("entry %d's chunk at byte %d lies past the file's end at %d", i, t.Base+o, size), Err: ErrTruncated}
		}
		prev = o
		t.Entries[i] = e
	}
	return t, nil
}

// equal reports whether two tables list the same chunks.
func (t *table) equal(u *table) bool {
	if t.Base != u.Base || len(t.Entries) != len(u.Entries) {
		return false
	}
	for i := range t.Entries {
		if t.Entries[i] != u.Entries[i] {
			return false
		}
	}
	return true
}

// Hashes are the digests the acquiring tool stored for the media; a nil
// field was not stored.
type Hashes struct {
	MD5  []byte
	SHA1 []byte
}

// parseHash reads a hash section (MD5).
func parseHash(r io.ReaderAt, path string, size int64, s section) ([]byte, error) {
	b, err := sectionData(r, path, size, s, hashSectionSize)
	if err != nil {
		return nil, err
	}
	if err := checkSum(path, s.dataStart(), "hash section", b, hashSectionSize-4); err != nil {
		return nil, err
	}
	return nonZero(b[:16]), nil
}

// parseDigest reads a digest section (MD5 and SHA-1).
func parseDigest(r io.ReaderAt, path string, size int64, s section) (md5, sha1 []byte, err error) {
	b, err := sectionData(r, path, size, s, digestSectionSize)
	if err != nil {
		return nil, nil, err
	}
	if err := checkSum(path, s.dataStart(), "digest section", b, digestSectionSize-4); err != nil {
		return nil, nil, err
	}
	return nonZero(b[:16]), nonZero(b[16:36]), nil
}

// nonZero returns a copy of b, or nil when b is all zeros (not stored).
func nonZero(b []byte) []byte {
	for _, c := range b {
		if c != 0 {
			return bytes.Clone(b)
		}
	}
	return nil
}
