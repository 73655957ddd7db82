package cab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// On-disk sizes and offsets of MS-CAB structures (field names from the
// specification).
const (
	signature      = "MSCF"
	cfheaderSize   = 36 // up to and including iCabinet
	cfheaderResExt = 4  // cbCFHeader, cbCFFolder, cbCFData
	cffolderSize   = 8  // coffCabStart, cCFData, typeCompress
	cffileSize     = 16 // up to szName
	cfdataSize     = 8  // csum, cbData, cbUncomp

	offCbCabinet    = 8
	offCoffFiles    = 16
	offVersionMinor = 24
	offVersionMajor = 25
	offCFolders     = 26
	offCFiles       = 28
	offFlags        = 30
	offSetID        = 32
	offICabinet     = 34

	// flags
	flagPrevCabinet    = 0x0001
	flagNextCabinet    = 0x0002
	flagReservePresent = 0x0004

	// maxName bounds szName and the cabinet/disk name strings (MS-CAB: 255
	// bytes plus the NUL).
	maxName = 256
	// maxHeaderReserve is the largest cbCFHeader MS-CAB allows.
	maxHeaderReserve = 60000

	// maxFrame is the most a CFDATA block may expand to (MS-CAB: 32 KiB).
	maxFrame = 32768

	// attribNameIsUTF marks a szName in UTF-8 rather than the OEM code page.
	attribNameIsUTF = 0x80
)

// Special iFolder values of a CFFILE entry for members of a split set.
const (
	ifoldContinuedFromPrev    = 0xFFFD
	ifoldContinuedToNext      = 0xFFFE
	ifoldContinuedPrevAndNext = 0xFFFF
)

// Compression is a CFFOLDER's typeCompress: the method in the low four bits
// and, for LZX and Quantum, the log2 of the window in bits 8..12.
type Compression uint16

// Compression methods (typeCompress & 0x000F).
const (
	CompressNone    = 0
	CompressMSZIP   = 1
	CompressQuantum = 2
	CompressLZX     = 3
)

// Method is the compression method.
func (c Compression) Method() int { return int(c & 0x000F) }

// Window is the log2 of the method's window (LZX: 15..21, Quantum:
// 10..21), from bits 8..12.
func (c Compression) Window() int { return int(c>>8) & 0x1F }

func (c Compression) String() string {
	switch c.Method() {
	case CompressNone:
		return "stored"
	case CompressMSZIP:
		return "MSZIP"
	case CompressQuantum:
		return fmt.Sprintf("Quantum:%d", c.Window())
	case CompressLZX:
		return fmt.Sprintf("LZX:%d", c.Window())
	}
	return fmt.Sprintf("unknown(0x%04x)", uint16(c))
}

// Folder is one CFFOLDER: a run of CFDATA blocks compressed as one stream.
type Folder struct {
	Index       int
	Offset      int64 // of the CFFOLDER entry
	DataOffset  int64 // coffCabStart: the first CFDATA block
	DataBlocks  int   // cCFData
	Compression Compression
}

// File is one CFFILE entry: a member stored at an offset of its folder's
// uncompressed stream.
type File struct {
	Name       string
	Size       uint32 // cbFile
	Offset     uint32 // uoffFolderStart
	FolderID   uint16 // iFolder as stored (0xFFFD..0xFFFF for split members)
	Modified   time.Time
	Attributes uint16
	EntryAt    int64 // byte offset of the CFFILE entry
}

// folder returns the index of the member's folder in this cabinet and
// whether the member lies wholly inside this cabinet.
func (f *File) folder(nFolders int) (int, bool) {
	switch f.FolderID {
	case ifoldContinuedFromPrev, ifoldContinuedPrevAndNext:
		return 0, false
	case ifoldContinuedToNext:
		return nFolders - 1, false
	}
	return int(f.FolderID), true
}

// Header is the interpreted CFHEADER.
type Header struct {
	Size                  uint32 // cbCabinet
	VersionMajor          uint8
	VersionMinor          uint8
	Flags                 uint16
	SetID                 uint16
	Index                 uint16 // iCabinet: place in a split set
	HeaderReserve         []byte // abReserve
	FolderReserve         int    // cbCFFolder
	DataReserve           int    // cbCFData
	PrevCabinet, PrevDisk string
	NextCabinet, NextDisk string
}

// Cabinet is an opened cabinet: its header and tables, read once by Open.
type Cabinet struct {
	r       io.ReaderAt
	size    int64
	Header  Header
	Folders []Folder
	Files   []File
	byName  map[string]int // normName → index in Files
}

// Open parses a cabinet's CFHEADER, CFFOLDER and CFFILE tables from r,
// which holds size bytes. Member data is read only on extraction.
func Open(r io.ReaderAt, size int64) (*Cabinet, error) {
	c := &Cabinet{r: r, size: size}
	hdr := make([]byte, cfheaderSize)
	if err := c.readAt(hdr, 0, "CFHEADER"); err != nil {
		if errors.Is(err, ErrFormat) {
			return nil, formatErr(0, "CFHEADER", ErrNotCabinet, size, "file too short for a cabinet header")
		}
		return nil, err
	}
	if string(hdr[:4]) != signature {
		return nil, formatErr(0, "CFHEADER", ErrNotCabinet, fmt.Sprintf("%q", hdr[:4]), "bad signature")
	}
	h := &c.Header
	h.Size = le32(hdr[offCbCabinet:])
	h.VersionMinor, h.VersionMajor = hdr[offVersionMinor], hdr[offVersionMajor]
	h.Flags = le16(hdr[offFlags:])
	h.SetID = le16(hdr[offSetID:])
	h.Index = le16(hdr[offICabinet:])
	coffFiles := int64(le32(hdr[offCoffFiles:]))
	nFolders := int(le16(hdr[offCFolders:]))
	nFiles := int(le16(hdr[offCFiles:]))
	// MS-CAB defines version 1.3 only, but cabextract reads any version and
	// so do we: the layout has never changed.
	// cabextract reads a cabinet shorter than cbCabinet as far as its data
	// lasts (warning of truncation); so do we: a member whose blocks lie past
	// the end fails when read, with the offset.
	pos := int64(cfheaderSize)
	if h.Flags&flagReservePresent != 0 {
		ext := make([]byte, cfheaderResExt)
		if err := c.readAt(ext, pos, "CFHEADER reserve sizes"); err != nil {
			return nil, err
		}
		cbHdr := int(le16(ext))
		if cbHdr > maxHeaderReserve {
			return nil, formatErr(pos, "CFHEADER", ErrFormat, cbHdr, "cbCFHeader over the %d MS-CAB allows", maxHeaderReserve)
		}
		h.FolderReserve, h.DataReserve = int(ext[2]), int(ext[3])
		pos += cfheaderResExt
		h.HeaderReserve = make([]byte, cbHdr)
		if err := c.readAt(h.HeaderReserve, pos, "CFHEADER abReserve"); err != nil {
			return nil, err
		}
		pos += int64(cbHdr)
	}
	var err error
	tr := &tableReader{c: c}
	if h.Flags&flagPrevCabinet != 0 {
		if h.PrevCabinet, pos, err = tr.readName(pos, "szCabinetPrev", false); err != nil {
			return nil, err
		}
		if h.PrevDisk, pos, err = tr.readName(pos, "szDiskPrev", false); err != nil {
			return nil, err
		}
	}
	if h.Flags&flagNextCabinet != 0 {
		if h.NextCabinet, pos, err = tr.readName(pos, "szCabinetNext", false); err != nil {
			return nil, err
		}
		if h.NextDisk, pos, err = tr.readName(pos, "szDiskNext", false); err != nil {
			return nil, err
		}
	}
	if nFolders == 0 {
		return nil, formatErr(offCFolders, "CFHEADER", ErrFormat, 0, "cabinet has no folders")
	}
	// Check the counts against the bytes that remain before allocating.
	folderEntry := int64(cffolderSize + h.FolderReserve)
	if pos+int64(nFolders)*folderEntry > size {
		return nil, formatErr(pos, "CFFOLDER", ErrFormat, nFolders, "%d folders of %d bytes run past the end of the %d-byte file", nFolders, folderEntry, size)
	}
	if coffFiles+int64(nFiles)*(cffileSize+2) > size {
		return nil, formatErr(offCoffFiles, "CFFILE", ErrFormat, nFiles, "%d files at 0x%x run past the end of the %d-byte file", nFiles, coffFiles, size)
	}
	tab := make([]byte, int64(nFolders)*folderEntry)
	if err := c.readAt(tab, pos, "CFFOLDER table"); err != nil {
		return nil, err
	}
	c.Folders = make([]Folder, nFolders)
	for i := range c.Folders {
		e := tab[int64(i)*folderEntry:]
		c.Folders[i] = Folder{
			Index:       i,
			Offset:      pos + int64(i)*folderEntry,
			DataOffset:  int64(le32(e)),
			DataBlocks:  int(le16(e[4:])),
			Compression: Compression(le16(e[6:])),
		}
	}
	c.Files = make([]File, 0, nFiles)
	pos = coffFiles
	for i := 0; i < nFiles; i++ {
		ent, err := tr.bytes(pos, cffileSize, "CFFILE")
		if err != nil {
			return nil, err
		}
		if len(ent) < cffileSize {
			return nil, formatErr(pos, "CFFILE", ErrFormat, i, "entry %d of %d cut off by the end of the file", i, nFiles)
		}
		f := File{
			Size:       le32(ent),
			Offset:     le32(ent[4:]),
			FolderID:   le16(ent[8:]),
			Modified:   dosTime(le16(ent[10:]), le16(ent[12:])),
			Attributes: le16(ent[14:]),
			EntryAt:    pos,
		}
		if f.FolderID < ifoldContinuedFromPrev && int(f.FolderID) >= nFolders {
			return nil, formatErr(pos+8, "CFFILE", ErrFormat, f.FolderID, "iFolder names no folder of the %d", nFolders)
		}
		if f.Name, pos, err = tr.readName(pos+cffileSize, "CFFILE szName", f.Attributes&attribNameIsUTF != 0); err != nil {
			return nil, err
		}
		c.Files = append(c.Files, f)
	}
	c.byName = make(map[string]int, len(c.Files))
	for i := len(c.Files) - 1; i >= 0; i-- {
		c.byName[normName(c.Files[i].Name)] = i
	}
	return c, nil
}

// readAt reads exactly len(b) bytes at off, naming what was read when the
// file ends first.
func (c *Cabinet) readAt(b []byte, off int64, what string) error {
	if off < 0 || off+int64(len(b)) > c.size {
		return formatErr(off, what, ErrFormat, nil, "%d bytes needed past the end of the %d-byte file", len(b), c.size)
	}
	n, err := c.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return formatErr(off, what, ErrFormat, nil, "file ends after %d of %d bytes", n, len(b))
	}
	return fmt.Errorf("cab: reading %s at byte 0x%x: %w", what, off, err)
}

// tableChunk is how much of the cabinet's tables one read fetches: the
// CFFILE table of XP's driver.cab has thousands of entries, and each read
// may be a walk through an NTFS runlist.
const tableChunk = 64 << 10

// tableReader serves the header's strings and the CFFILE table from one
// cached chunk of the cabinet at a time.
type tableReader struct {
	c   *Cabinet
	buf []byte
	at  int64
}

// bytes returns up to n bytes at off (fewer only where the file ends).
func (t *tableReader) bytes(off int64, n int, what string) ([]byte, error) {
	if off < 0 || off >= t.c.size {
		return nil, formatErr(off, what, ErrFormat, nil, "starts at or past the end of the %d-byte file", t.c.size)
	}
	if int64(n) > t.c.size-off {
		n = int(t.c.size - off)
	}
	if off >= t.at && off+int64(n) <= t.at+int64(len(t.buf)) {
		return t.buf[off-t.at:][:n], nil
	}
	size := int64(max(n, tableChunk))
	if size > t.c.size-off {
		size = t.c.size - off
	}
	if int64(cap(t.buf)) < size {
		t.buf = make([]byte, size)
	}
	t.buf = t.buf[:size]
	if err := t.c.readAt(t.buf, off, what); err != nil {
		t.buf = t.buf[:0]
		return nil, err
	}
	t.at = off
	return t.buf[:n], nil
}

// readName reads a NUL-terminated string of at most maxName bytes at off
// and returns it with the offset after its NUL. Names not flagged UTF-8 are
// in an OEM code page the cabinet does not name; bytes over 0x7F are taken
// as Latin-1 so each maps to one rune and lookups stay byte-exact.
func (t *tableReader) readName(off int64, what string, isUTF bool) (string, int64, error) {
	b, err := t.bytes(off, maxName, what)
	if err != nil {
		return "", 0, err
	}
	end := bytes.IndexByte(b, 0)
	if end < 0 {
		return "", 0, formatErr(off, what, ErrFormat, nil, "no NUL within %d bytes", len(b))
	}
	b = b[:end]
	var s string
	if isUTF && utf8.Valid(b) {
		s = string(b)
	} else {
		var sb strings.Builder
		for _, x := range b {
			sb.WriteRune(rune(x))
		}
		s = sb.String()
	}
	return s, off + int64(end) + 1, nil
}

// dosTime converts a FAT date and time (local time, two-second steps) to a
// time.Time in UTC, as the cabinet records no zone.
func dosTime(d, t uint16) time.Time {
	return time.Date(1980+int(d>>9), time.Month(d>>5&0xF), int(d&0x1F),
		int(t>>11), int(t>>5&0x3F), int(t&0x1F)*2, 0, time.UTC)
}

// Lookup returns the member named name, compared without regard to case
// (as Windows compares file names) and with `/` and `\` taken alike.
// Of several members with one name the first wins, as the index built by
// Open keeps it.
func (c *Cabinet) Lookup(name string) (*File, bool) {
	i, ok := c.byName[normName(name)]
	if !ok {
		return nil, false
	}
	return &c.Files[i], true
}

func normName(s string) string { return strings.ToLower(strings.ReplaceAll(s, "/", `\`)) }
