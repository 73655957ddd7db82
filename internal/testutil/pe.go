package testutil

import (
	"encoding/binary"
	"unicode/utf16"
)

// PEWithVersion lays out a small PE32 image, as a driver (.sys) would be,
// with code in .text and a VS_VERSIONINFO block stating the file version
// major.minor.build.revision at the start of .rsrc. The version block is
// laid out as winver.h describes it (wLength, wValueLength, wType, the
// UTF-16 key "VS_VERSION_INFO", padding, VS_FIXEDFILEINFO); the resource
// directory tree above it is left out, as kvmify finds the block by its
// signature. Field offsets follow the PE/COFF specification.
func PEWithVersion(major, minor, build, revision uint16, code []byte) []byte {
	const (
		lfanew       = 0x40
		coffSize     = 20
		optSize      = 224 // IMAGE_OPTIONAL_HEADER32 with 16 data directories
		sectHdrSize  = 40
		fileAlign    = 0x200
		sectAlign    = 0x1000
		machineI386  = 0x14c
		optMagicPE32 = 0x10b
		fixedSig     = 0xFEEF04BD
		fixedSize    = 52
	)
	align := func(n, a int) int { return (n + a - 1) / a * a }

	// VS_VERSIONINFO: header, key, pad to 4, VS_FIXEDFILEINFO.
	key := utf16.Encode([]rune("VS_VERSION_INFO\x00"))
	vi := make([]byte, 6+2*len(key))
	for i, u := range key {
		binary.LittleEndian.PutUint16(vi[6+2*i:], u)
	}
	vi = append(vi, make([]byte, align(len(vi), 4)-len(vi))...)
	fixed := make([]byte, fixedSize)
	binary.LittleEndian.PutUint32(fixed[0:], fixedSig)
	binary.LittleEndian.PutUint32(fixed[4:], 0x00010000) // dwStrucVersion
	binary.LittleEndian.PutUint32(fixed[8:], uint32(major)<<16|uint32(minor))
	binary.LittleEndian.PutUint32(fixed[12:], uint32(build)<<16|uint32(revision))
	copy(fixed[16:24], fixed[8:16])                 // dwProductVersionMS/LS
	binary.LittleEndian.PutUint32(fixed[40:], 3)    // dwFileType: VFT_DRV
	binary.LittleEndian.PutUint32(fixed[44:], 0x0A) // dwFileSubtype: VFT2_DRV_SYSTEM
	vi = append(vi, fixed...)
	binary.LittleEndian.PutUint16(vi[0:], uint16(len(vi))) // wLength
	binary.LittleEndian.PutUint16(vi[2:], fixedSize)       // wValueLength

	sects := []struct {
		name string
		data []byte
	}{{".text", code}, {".rsrc", vi}}
	img := make([]byte, fileAlign)
	copy(img, "MZ")
	binary.LittleEndian.PutUint32(img[0x3c:], lfanew)
	copy(img[lfanew:], "PE\x00\x00")
	coff := img[lfanew+4:]
	binary.LittleEndian.PutUint16(coff[0:], machineI386)
	binary.LittleEndian.PutUint16(coff[2:], uint16(len(sects)))
	binary.LittleEndian.PutUint16(coff[16:], optSize)
	opt := coff[coffSize:]
	binary.LittleEndian.PutUint16(opt[0:], optMagicPE32)
	binary.LittleEndian.PutUint32(opt[32:], sectAlign) // SectionAlignment
	binary.LittleEndian.PutUint32(opt[36:], fileAlign) // FileAlignment
	binary.LittleEndian.PutUint16(opt[68:], 1)         // Subsystem: native
	binary.LittleEndian.PutUint32(opt[92:], 16)        // NumberOfRvaAndSizes
	va := sectAlign
	shOff := lfanew + 4 + coffSize + optSize
	for i, s := range sects {
		// img grows below, so each header is addressed afresh.
		raw := align(len(s.data), fileAlign)
		sh := make([]byte, sectHdrSize)
		copy(sh[0:8], s.name)
		binary.LittleEndian.PutUint32(sh[8:], uint32(len(s.data))) // VirtualSize
		binary.LittleEndian.PutUint32(sh[12:], uint32(va))         // VirtualAddress
		binary.LittleEndian.PutUint32(sh[16:], uint32(raw))        // SizeOfRawData
		binary.LittleEndian.PutUint32(sh[20:], uint32(len(img)))   // PointerToRawData
		copy(img[shOff+i*sectHdrSize:], sh)
		img = append(img, s.data...)
		img = append(img, make([]byte, raw-len(s.data))...)
		va += align(len(s.data)+1, sectAlign)
	}
	binary.LittleEndian.PutUint32(img[lfanew+4+coffSize+56:], uint32(va)) // SizeOfImage
	return img
}
