package windows

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
)

// VS_FIXEDFILEINFO layout (winver.h): the signature, then dwStrucVersion,
// dwFileVersionMS and dwFileVersionLS.
const (
	vsFixedFileInfoSignature = 0xFEEF04BD
	vsOffFileVersionMS       = 8
	vsOffFileVersionLS       = 12
	vsFixedMinSize           = 16
	// The structure is DWORD-aligned inside the VS_VERSIONINFO block.
	vsAlign = 4
	// maxResourceSection bounds the .rsrc bytes scanned; a kernel's
	// resources are a few hundred KiB.
	maxResourceSection = 64 << 20
	resourceSection    = ".rsrc"
)

// ErrNoVersionResource marks a PE image without a VS_FIXEDFILEINFO.
var ErrNoVersionResource = errors.New("windows: no version resource")

// FileVersion is the file version a PE image's version resource states.
type FileVersion struct {
	Major, Minor, Build, Revision uint32
}

// KernelVersion reads the file version from the VS_FIXEDFILEINFO in a PE
// image's resource section (ntoskrnl.exe's version is the Windows
// version). It scans the section for the structure's signature rather than
// walking the resource directory: the signature is unambiguous and the scan
// is bounded by the section size.
func KernelVersion(image []byte) (FileVersion, error) {
	f, err := pe.NewFile(bytes.NewReader(image))
	if err != nil {
		return FileVersion{}, fmt.Errorf("windows: kernel image: %w", err)
	}
	defer f.Close()
	s := f.Section(resourceSection)
	if s == nil {
		return FileVersion{}, ErrNoVersionResource
	}
	if s.Size > maxResourceSection {
		return FileVersion{}, fmt.Errorf("windows: kernel %s section is %d bytes, over %d", resourceSection, s.Size, maxResourceSection)
	}
	data, err := s.Data()
	if err != nil {
		return FileVersion{}, fmt.Errorf("windows: kernel %s section: %w", resourceSection, err)
	}
	for off := 0; off+vsFixedMinSize <= len(data); off += vsAlign {
		if binary.LittleEndian.Uint32(data[off:]) != vsFixedFileInfoSignature {
			continue
		}
		ms := binary.LittleEndian.Uint32(data[off+vsOffFileVersionMS:])
		ls := binary.LittleEndian.Uint32(data[off+vsOffFileVersionLS:])
		return FileVersion{Major: ms >> 16, Minor: ms & 0xFFFF, Build: ls >> 16, Revision: ls & 0xFFFF}, nil
	}
	return FileVersion{}, ErrNoVersionResource
}
