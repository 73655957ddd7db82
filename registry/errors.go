package registry

import (
	"errors"
	"fmt"
)

// Sentinels for errors.Is; every FormatError also matches ErrFormat.
var (
	// ErrFormat marks malformed, truncated or hostile hive data.
	ErrFormat = errors.New("registry: malformed hive")
	// ErrChecksum marks a base block whose stored checksum does not match its content.
	ErrChecksum = errors.New("registry: bad checksum")
	// ErrDirtyHive marks a hive whose last write was not completed and whose logs were not applied.
	ErrDirtyHive = errors.New("registry: dirty hive")
	// ErrNotFound marks a key or value that does not exist.
	ErrNotFound = errors.New("registry: not found")
	// ErrLeakedCell marks an allocated cell nothing references: lost
	// space, reported by CheckReport, never an error by itself.
	ErrLeakedCell = errors.New("registry: leaked cell")
	// ErrLimit marks a hive that exceeds a structural limit (nesting depth, list size) kvmify enforces against hostile input.
	ErrLimit = errors.New("registry: structural limit exceeded")
)

// FormatError locates a fault in hive data: the absolute file offset and the
// structure being decoded when it was found.
type FormatError struct {
	Offset    int64  // absolute offset in the hive file
	Structure string // e.g. "base block", "hbin", "nk", "lh"
	Msg       string
	Value     any   // the offending value, or nil
	Err       error // a more specific sentinel than ErrFormat, or nil
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("registry: %s at byte 0x%x: %s", e.Structure, e.Offset, e.Msg)
	if e.Value != nil {
		s += fmt.Sprintf(" (value %#v)", e.Value)
	}
	return s
}

// Unwrap lets errors.Is match both ErrFormat and the specific sentinel.
func (e *FormatError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrFormat, e.Err}
	}
	return []error{ErrFormat}
}

func formatErr(off int64, structure string, value any, format string, args ...any) *FormatError {
	return &FormatError{Offset: off, Structure: structure, Msg: fmt.Sprintf(format, args...), Value: value}
}
