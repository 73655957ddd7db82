package vmdk

import (
	"errors"
	"fmt"
)

// Sentinels that FormatError wraps, for errors.Is.
var (
	// ErrNotVMDK means the file is neither a sparse extent nor a text
	// descriptor.
	ErrNotVMDK = errors.New("not a VMDK image")
	// ErrCorrupt means a structure is impossible, or a grain fails to
	// decompress.
	ErrCorrupt = errors.New("corrupt VMDK image")
	// ErrUnsupported means the image needs something this read-only reader
	// refuses (an extent type such as VMFSSPARSE or SESPARSE, a
	// compression other than deflate, a parent that is not a VMDK).
	ErrUnsupported = errors.New("unsupported VMDK feature")
)

// FormatError locates a fault in a VMDK file: the file, the absolute
// offset of the structure (a line number for a descriptor), what it is and
// the bad value.
type FormatError struct {
	File   string
	Offset int64
	What   string
	Value  any
	Err    error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s: %s at offset %d (0x%x)", e.File, e.What, e.Offset, e.Offset)
	if e.Value != nil {
		s += fmt.Sprintf(": %v", e.Value)
	}
	return s + ": " + e.Err.Error()
}

func (e *FormatError) Unwrap() error { return e.Err }
