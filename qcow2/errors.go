package qcow2

import (
	"errors"
	"fmt"
)

// Sentinels that FormatError wraps, for errors.Is.
var (
	// ErrNotQcow2 means the file does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("not a qcow2 image")
	// ErrCorrupt means a header or table field is impossible.
	ErrCorrupt = errors.New("corrupt qcow2 image")
	// ErrUnsupported means the image uses a feature this read-only reader
	// refuses (encryption, an external data file, extended L2 entries,
	// zstd compression, an unknown incompatible feature).
	ErrUnsupported = errors.New("unsupported qcow2 feature")
)

// FormatError locates a fault in a qcow2 file: the file, the absolute
// offset of the structure, what it is and the bad value.
type FormatError struct {
	File   string
	Offset int64
	What   string
	Value  any
	Err    error // one of the sentinels
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s: %s at offset %d (0x%x)", e.File, e.What, e.Offset, e.Offset)
	if e.Value != nil {
		s += fmt.Sprintf(": %v", e.Value)
	}
	return s + ": " + e.Err.Error()
}

func (e *FormatError) Unwrap() error { return e.Err }
