// Package peversion reads the file version a PE image (an .exe, .dll or
// .sys) states in its version resource, as Explorer's "File version" shows
// it. kvmify reads it to name Windows' version from ntoskrnl.exe and to
// show which build of a driver it supplies.
package peversion

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
	// FixedFileInfoSignature is VS_FIXEDFILEINFO's dwSignature.
	FixedFileInfoSignature = 0xFEEF04BD
	offFileVersionMS       = 8
	offFileVersionLS       = 12
	fixedMinSize           = 16
	// The structure is DWORD-aligned inside the VS_VERSIONINFO block.
	fixedAlign = 4
	// maxResourceSection bounds the .rsrc bytes scanned; a kernel's
	// resources are a few hundred KiB.
	maxResourceSection = 64 << 20
	resourceSection    = ".rsrc"
)

// ErrNoVersion marks a PE image without a VS_FIXEDFILEINFO.
var ErrNoVersion = errors.New("peversion: no version resource")

// Version is the file version a PE image's version resource states.
type Version struct {
	Major, Minor, Build, Revision uint32
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v.Major, v.Minor, v.Build, v.Revision)
}

// Less reports whether v is an older version than w.
func (v Version) Less(w Version) bool {
	a := [4]uint32{v.Major, v.Minor, v.Build, v.Revision}
	b := [4]uint32{w.Major, w.Minor, w.Build, w.Revision}
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Read returns the file version from the VS_FIXEDFILEINFO in a PE image's
// resource section. It scans the section for the structure's signature
// rather than walking the resource directory: the signature is unambiguous
// and the scan is bounded by the section size.
func Read(image []byte) (Version, error) {
	f, err := pe.NewFile(bytes.NewReader(image))
	if err != nil {
		return Version{}, fmt.Errorf("peversion: PE image: %w", err)
	}
	defer f.Close()
	s := f.Section(resourceSection)
	if s == nil {
		return Version{}, ErrNoVersion
	}
	if s.Size > maxResourceSection {
		return Version{}, fmt.Errorf("peversion: %s section is %d bytes, over %d", resourceSection, s.Size, maxResourceSection)
	}
	data, err := s.Data()
	if err != nil {
		return Version{}, fmt.Errorf("peversion: %s section: %w", resourceSection, err)
	}
	for off := 0; off+fixedMinSize <= len(data); off += fixedAlign {
		if binary.LittleEndian.Uint32(data[off:]) != FixedFileInfoSignature {
			continue
		}
		ms := binary.LittleEndian.Uint32(data[off+offFileVersionMS:])
		ls := binary.LittleEndian.Uint32(data[off+offFileVersionLS:])
		return Version{Major: ms >> 16, Minor: ms & 0xFFFF, Build: ls >> 16, Revision: ls & 0xFFFF}, nil
	}
	return Version{}, ErrNoVersion
}
