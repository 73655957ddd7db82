// Package cab reads Microsoft Cabinet files (MS-CAB) through an io.ReaderAt:
// the CFHEADER, CFFOLDER and CFFILE tables, and the CFDATA blocks of a
// folder, decompressed from stored, MSZIP or LZX form with every non-zero
// block checksum verified. Extraction streams each folder once and hands out
// only the members asked for, so memory stays bounded by the LZX window
// (2 MiB at most) whatever the cabinet's size.
//
// Quantum folders are refused with ErrUnsupported, and so is a member that
// continues into another cabinet of a split set.
package cab

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotCabinet  = errors.New("not a cabinet (no MSCF signature)")
	ErrFormat      = errors.New("malformed cabinet")
	ErrChecksum    = errors.New("CFDATA checksum mismatch")
	ErrUnsupported = errors.New("unsupported compression")
	ErrSplit       = errors.New("member spans cabinets of a split set")
	ErrCorrupt     = errors.New("corrupt compressed data")
	ErrTooLarge    = errors.New("member larger than the caller's limit")
)

// FormatError reports malformed cabinet data: the structure, where (absolute
// byte offset in the cabinet), what is wrong and the offending value.
type FormatError struct {
	Offset    int64
	Structure string
	Msg       string
	Value     any
	Err       error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("cab: %s at byte 0x%x: %s", e.Structure, e.Offset, e.Msg)
	if e.Value != nil {
		s += fmt.Sprintf(" (value %v)", e.Value)
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, structure string, sentinel error, value any, format string, args ...any) error {
	return &FormatError{Offset: off, Structure: structure, Msg: fmt.Sprintf(format, args...), Value: value, Err: sentinel}
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
