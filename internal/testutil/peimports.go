package testutil

import "encoding/binary"

// PEWithImports builds a minimal PE image (PE32+ for AMD64 when plus, else
// PE32 for x86) whose import directory names the given modules, each with
// one imported function, laid out as the PE/COFF specification describes:
// DOS header, PE signature, COFF header, optional header with 16 data
// directories, one ".idata" section at RVA 0x1000 / file offset 0x200.
func PEWithImports(modules []string, plus bool) []byte {
	const (
		lfanew    = 0x40
		secRVA    = 0x1000
		secRaw    = 0x200
		fileAlign = 0x200
	)
	optSize := 224
	if plus {
		optSize = 240
	}
	// Section content: descriptors, then per module a two-entry thunk
	// array (ILT), a hint/name entry and the module name.
	var sec []byte
	le := binary.LittleEndian
	descs := make([]byte, (len(modules)+1)*20)
	thunk := 4
	if plus {
		thunk = 8
	}
	body := []byte{}
	base := len(descs)
	type fix struct{ ilt, iat, name int }
	var fixes []fix
	for _, m := range modules {
		var f fix
		f.ilt = base + len(body)
		body = append(body, make([]byte, 2*thunk)...)
		f.iat = base + len(body)
		body = append(body, make([]byte, 2*thunk)...)
		hint := base + len(body)
		body = append(body, 0, 0)
		body = append(body, "DriverEntryImport\x00"...)
		if len(body)%2 == 1 {
			body = append(body, 0)
		}
		f.name = base + len(body)
		body = append(body, m...)
		body = append(body, 0)
		if len(body)%2 == 1 {
			body = append(body, 0)
		}
		fixes = append(fixes, f)
		// both thunk arrays point at the hint/name entry
		for _, at := range []int{f.ilt, f.iat} {
			if plus {
				le.PutUint64(body[at-base:], uint64(secRVA+hint))
			} else {
				le.PutUint32(body[at-base:], uint32(secRVA+hint))
			}
		}
	}
	for i, f := range fixes {
		d := descs[i*20:]
		le.PutUint32(d[0:], uint32(secRVA+f.ilt))
		le.PutUint32(d[12:], uint32(secRVA+f.name))
		le.PutUint32(d[16:], uint32(secRVA+f.iat))
	}
	sec = append(descs, body...)
	rawSize := (len(sec) + fileAlign - 1) / fileAlign * fileAlign
	img := make([]byte, secRaw+rawSize)
	copy(img, "MZ")
	le.PutUint32(img[0x3C:], lfanew)
	copy(img[lfanew:], "PE\x00\x00")
	coff := img[lfanew+4:]
	if plus {
		le.PutUint16(coff[0:], 0x8664)
	} else {
		le.PutUint16(coff[0:], 0x14C)
	}
	le.PutUint16(coff[2:], 1)                // NumberOfSections
	le.PutUint16(coff[16:], uint16(optSize)) // SizeOfOptionalHeader
	le.PutUint16(coff[18:], 0x0102)          // executable, 32-bit machine
	opt := img[lfanew+24:]
	dirs := 96
	if plus {
		le.PutUint16(opt[0:], 0x20B)
		le.PutUint64(opt[24:], 0x10000) // ImageBase
		dirs = 112
	} else {
		le.PutUint16(opt[0:], 0x10B)
		le.PutUint32(opt[28:], 0x10000) // ImageBase
	}
	le.PutUint32(opt[32:], 0x1000)                                        // SectionAlignment
	le.PutUint32(opt[36:], fileAlign)                                     // FileAlignment
	le.PutUint16(opt[40:], 5)                                             // MajorOperatingSystemVersion
	le.PutUint16(opt[48:], 5)                                             // MajorSubsystemVersion
	le.PutUint32(opt[56:], uint32(secRVA+(len(sec)+0xFFF)/0x1000*0x1000)) // SizeOfImage
	le.PutUint32(opt[60:], secRaw)                                        // SizeOfHeaders
	le.PutUint16(opt[68:], 1)                                             // Subsystem: native
	le.PutUint32(opt[dirs-4:], 16)                                        // NumberOfRvaAndSizes
	le.PutUint32(opt[dirs+8:], secRVA)                                    // import directory RVA
	le.PutUint32(opt[dirs+12:], uint32(len(descs)))                       // and size
	sh := img[lfanew+24+optSize:]
	copy(sh, ".idata")
	le.PutUint32(sh[8:], uint32(len(sec)))
	le.PutUint32(sh[12:], secRVA)
	le.PutUint32(sh[16:], uint32(rawSize))
	le.PutUint32(sh[20:], secRaw)
	le.PutUint32(sh[36:], 0xC0000040) // initialised data, read, write
	copy(img[secRaw:], sec)
	return img
}
