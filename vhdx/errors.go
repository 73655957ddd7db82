package vhdx

import (
	"errors"
	"fmt"
)

// Sentinels that FormatError wraps, for errors.Is.
var (
	// ErrNotVHDX means the file does not start with "vhdxfile".
	ErrNotVHDX = errors.New("not a VHDX image")
	// ErrCorrupt means a structure is impossible or fails its checksum.
	ErrCorrupt = errors.New("corrupt VHDX image")
	// ErrUnsupported means the image needs something this read-only reader
	// refuses: a differencing disk (parent), an unknown required region or
	// metadata item.
	ErrUnsupported = errors.New("unsupported VHDX feature")
	// ErrLogReplay means the image's log holds writes that were never
	// applied; reading it without replaying them (which would need a write
	// or a private copy) would give stale data, so it is refused. Attach
	// the image once in Hyper-V or Windows (or run qemu-img check -r all on
	// a copy) to replay the log.
	ErrLogReplay = errors.New("VHDX log needs replay")
)

// FormatError locates a fault in a VHDX file: the file, the absolute
// offset of the structure, what it is and the bad value.
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
