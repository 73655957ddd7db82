package vhd

import (
	"errors"
	"fmt"
)

// Sentinels that FormatError wraps, for errors.Is.
var (
	// ErrNotVHD means the file has no VHD footer ("conectix").
	ErrNotVHD = errors.New("not a VHD image")
	// ErrCorrupt means a structure is impossible or fails its checksum.
	ErrCorrupt = errors.New("corrupt VHD image")
	// ErrUnsupported means the image needs something this read-only reader
	// refuses (a differencing disk, an unknown disk type).
	ErrUnsupported = errors.New("unsupported VHD feature")
)

// FormatError locates a fault in a VHD file: the file, the absolute offset
// of the structure, what it is and the bad value.
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
