package ewf

import (
	"errors"
	"fmt"
)

// Sentinels wrapped by FormatError, for errors.Is.
var (
	// ErrFormat marks a structure that breaks the EWF format.
	ErrFormat = errors.New("not valid EWF")
	// ErrChecksum marks stored data whose Adler-32 (or zlib) checksum fails.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrCorruptChunk marks a chunk that does not inflate to its size.
	ErrCorruptChunk = errors.New("corrupt chunk")
	// ErrMissingSegment marks a segment file of the set that is absent.
	ErrMissingSegment = errors.New("segment file missing")
	// ErrTruncated marks a segment file that ends before its structures do.
	ErrTruncated = errors.New("segment file truncated")
	// ErrUnsupported marks valid EWF that this reader does not read.
	ErrUnsupported = errors.New("unsupported EWF feature")
)

// FormatError locates a fault: the segment file, the byte offset in it,
// the structure read there, and what is wrong.
type FormatError struct {
	Path   string
	Offset int64
	What   string // the structure: "section descriptor", "table", "chunk 17", …
	Msg    string
	Err    error // a sentinel above, or the underlying I/O or zlib error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("ewf %s: %s at byte %d", e.Path, e.What, e.Offset)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }
