// Package peimports reads the names of the modules a PE image (a Windows
// driver, DLL or executable) imports, from its import directory. The boot
// model needs them because the loader must also load every export driver a
// boot driver imports (intelide.sys → pciidex.sys), and a missing one stops
// the boot as surely as a missing driver.
//
// It reads only what it needs through an io.ReaderAt: the DOS and PE
// headers, the section table and the import descriptors with their name
// strings (PE/COFF specification, "The .idata Section").
package peimports

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Offsets and sizes from the PE/COFF specification.
const (
	dosMagic          = "MZ"
	offLfanew         = 0x3C // e_lfanew: file offset of the PE signature
	peSignature       = "PE\x00\x00"
	coffHeaderSize    = 20
	offNumSections    = 2  // in the COFF header
	offSizeOfOptional = 16 // in the COFF header
	magicPE32         = 0x10B
	magicPE32Plus     = 0x20B
	// Offsets of NumberOfRvaAndSizes in the optional header; the data
	// directories follow it.
	offNumDirsPE32     = 92
	offNumDirsPE32Plus = 108
	dataDirSize        = 8
	importDirIndex     = 1
	sectionHeaderSize  = 40
	offSecVirtualSize  = 8
	offSecVirtualAddr  = 12
	offSecRawSize      = 16
	offSecRawPointer   = 20
	importDescSize     = 20
	offDescName        = 12
	offDescFirstThunk  = 16
)

// Bounds against hostile input.
const (
	maxSections = 96   // the Windows loader's limit
	maxImports  = 4096 // far beyond any driver's
	maxNameLen  = 256
	// maxHeaderOffset bounds e_lfanew; real images keep it under 1 KiB.
	maxHeaderOffset = 1 << 20
)

// Sentinels for errors.Is.
var (
	// ErrNotPE marks data without the MZ and PE signatures.
	ErrNotPE = errors.New("peimports: not a PE image")
	// ErrFormat marks a PE image whose headers or import directory are
	// inconsistent.
	ErrFormat = errors.New("peimports: malformed PE image")
)

// FormatError locates a fault in a PE image.
type FormatError struct {
	Offset int64  // byte offset in the image
	What   string // the structure read there
	Value  uint64 // the bad value
	Err    error  // ErrNotPE or ErrFormat (or an I/O error)
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%v: %s at byte 0x%x (value 0x%x)", e.Err, e.What, e.Offset, e.Value)
}

// Unwrap gives the sentinel.
func (e *FormatError) Unwrap() error { return e.Err }

// section is the part of a section header that maps RVAs to file offsets.
type section struct {
	va, vsize, raw, rawSize uint32
}

// image is a PE file being read.
type image struct {
	r        io.ReaderAt
	size     int64
	sections []section
	headers  uint32 // bytes before the first section's data: RVA = offset there
}

func (im *image) read(off int64, n int, what string) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > im.size {
		return nil, &FormatError{Offset: off, What: what + " beyond the end of the file", Value: uint64(im.size), Err: ErrFormat}
	}
	b := make([]byte, n)
	if _, err := im.r.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(n) <= im.size) {
		return nil, &FormatError{Offset: off, What: "reading " + what, Err: err}
	}
	return b, nil
}

// Read returns the module names (as stored, e.g. "PCIIDEX.SYS") a PE image
// imports, in import-directory order; an image without an import directory
// has none.
func Read(r io.ReaderAt, size int64) ([]string, error) {
	im := &image{r: r, size: size}
	dos, err := im.read(0, offLfanew+4, "DOS header")
	if err != nil || string(dos[:2]) != dosMagic {
		return nil, &FormatError{Offset: 0, What: "DOS signature", Err: ErrNotPE}
	}
	lfanew := int64(binary.LittleEndian.Uint32(dos[offLfanew:]))
	if lfanew > maxHeaderOffset {
		return nil, &FormatError{Offset: offLfanew, What: "e_lfanew", Value: uint64(lfanew), Err: ErrFormat}
	}
	hdr, err := im.read(lfanew, len(peSignature)+coffHeaderSize, "PE header")
	if err != nil {
		return nil, err
	}
	if string(hdr[:4]) != peSignature {
		return nil, &FormatError{Offset: lfanew, What: "PE signature", Err: ErrNotPE}
	}
	coff := hdr[4:]
	nsec := int(binary.LittleEndian.Uint16(coff[offNumSections:]))
	optSize := int(binary.LittleEndian.Uint16(coff[offSizeOfOptional:]))
	if nsec > maxSections {
		return nil, &FormatError{Offset: lfanew + 4 + offNumSections, What: "NumberOfSections", Value: uint64(nsec), Err: ErrFormat}
	}
	optOff := lfanew + int64(len(hdr))
	opt, err := im.read(optOff, optSize, "optional header")
	if err != nil {
		return nil, err
	}
	if len(opt) < 2 {
		return nil, &FormatError{Offset: optOff, What: "optional header size", Value: uint64(optSize), Err: ErrFormat}
	}
	var numDirsOff int
	switch magic := binary.LittleEndian.Uint16(opt); magic {
	case magicPE32:
		numDirsOff = offNumDirsPE32
	case magicPE32Plus:
		numDirsOff = offNumDirsPE32Plus
	default:
		return nil, &FormatError{Offset: optOff, What: "optional header magic", Value: uint64(magic), Err: ErrFormat}
	}
	if numDirsOff+4 > len(opt) {
		return nil, &FormatError{Offset: optOff, What: "optional header too short for its data directories", Value: uint64(optSize), Err: ErrFormat}
	}
	ndirs := int(binary.LittleEndian.Uint32(opt[numDirsOff:]))
	dirOff := numDirsOff + 4 + importDirIndex*dataDirSize
	if ndirs <= importDirIndex || dirOff+dataDirSize > len(opt) {
		return nil, nil // no import directory
	}
	impRVA := binary.LittleEndian.Uint32(opt[dirOff:])
	if impRVA == 0 {
		return nil, nil
	}
	secOff := optOff + int64(optSize)
	secs, err := im.read(secOff, nsec*sectionHeaderSize, "section table")
	if err != nil {
		return nil, err
	}
	im.headers = ^uint32(0)
	for i := 0; i < nsec; i++ {
		s := secs[i*sectionHeaderSize:]
		sec := section{
			vsize: binary.LittleEndian.Uint32(s[offSecVirtualSize:]), va: binary.LittleEndian.Uint32(s[offSecVirtualAddr:]),
			rawSize: binary.LittleEndian.Uint32(s[offSecRawSize:]), raw: binary.LittleEndian.Uint32(s[offSecRawPointer:]),
		}
		im.sections = append(im.sections, sec)
		if sec.raw != 0 && sec.raw < im.headers {
			im.headers = sec.raw
		}
	}
	var names []string
	for i := 0; ; i++ {
		if i == maxImports {
			return nil, &FormatError{Offset: int64(impRVA), What: "import directory without a terminating entry", Value: maxImports, Err: ErrFormat}
		}
		rva := impRVA + uint32(i)*importDescSize
		off, err := im.offset(rva, importDescSize, "import descriptor")
		if err != nil {
			return nil, err
		}
		d, err := im.read(off, importDescSize, "import descriptor")
		if err != nil {
			return nil, err
		}
		nameRVA := binary.LittleEndian.Uint32(d[offDescName:])
		if nameRVA == 0 && binary.LittleEndian.Uint32(d[offDescFirstThunk:]) == 0 {
			return names, nil
		}
		name, err := im.cstring(nameRVA)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
}

// offset maps an RVA (and the n bytes from it) to a file offset.
func (im *image) offset(rva uint32, n int, what string) (int64, error) {
	for _, s := range im.sections {
		span := s.vsize
		if span == 0 {
			span = s.rawSize
		}
		if rva >= s.va && uint64(rva)+uint64(n) <= uint64(s.va)+uint64(span) {
			d := rva - s.va
			if uint64(d)+uint64(n) > uint64(s.rawSize) {
				return 0, &FormatError{Offset: int64(s.raw) + int64(d), What: what + " in a section's uninitialised tail", Value: uint64(rva), Err: ErrFormat}
			}
			return int64(s.raw) + int64(d), nil
		}
	}
	if uint64(rva)+uint64(n) <= uint64(im.headers) {
		return int64(rva), nil // inside the headers, mapped as stored
	}
	return 0, &FormatError{Offset: -1, What: what + " RVA in no section", Value: uint64(rva), Err: ErrFormat}
}

// cstring reads the NUL-terminated ASCII name at an RVA.
func (im *image) cstring(rva uint32) (string, error) {
	off, err := im.offset(rva, 1, "import name")
	if err != nil {
		return "", err
	}
	n := maxNameLen
	if off >= im.size {
		return "", &FormatError{Offset: off, What: "import name beyond the end of the file", Value: uint64(rva), Err: ErrFormat}
	}
	if rest := im.size - off; rest < int64(n) {
		n = int(rest)
	}
	b, err := im.read(off, n, "import name")
	if err != nil {
		return "", err
	}
	end := strings.IndexByte(string(b), 0)
	if end <= 0 {
		return "", &FormatError{Offset: off, What: "import name (empty or unterminated)", Value: uint64(rva), Err: ErrFormat}
	}
	for _, c := range b[:end] {
		if c < 0x20 || c > 0x7E {
			return "", &FormatError{Offset: off, What: "import name byte", Value: uint64(c), Err: ErrFormat}
		}
	}
	return string(b[:end]), nil
}
