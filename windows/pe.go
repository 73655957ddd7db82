package windows

import "github.com/kvmify/kvmify/peversion"

// vsFixedFileInfoSignature is VS_FIXEDFILEINFO's dwSignature (tests build
// version resources with it).
const vsFixedFileInfoSignature = peversion.FixedFileInfoSignature

// ErrNoVersionResource marks a PE image without a VS_FIXEDFILEINFO.
var ErrNoVersionResource = peversion.ErrNoVersion

// FileVersion is the file version a PE image's version resource states.
type FileVersion = peversion.Version

// KernelVersion reads the file version of a kernel image (ntoskrnl.exe's
// version is the Windows version); package peversion does the reading,
// which driver files share.
func KernelVersion(image []byte) (FileVersion, error) { return peversion.Read(image) }
