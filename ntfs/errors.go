// Package ntfs reads NTFS volumes through an io.ReaderAt: boot sector, MFT
// records with update-sequence fixups, attributes and runlists, $I30
// directory indexes, file data and the volume-state markers that matter
// before anything is written. It never writes; its internal types keep the
// raw bytes and disk locations a write planner needs.
package ntfs

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotNTFS      = errors.New("not an NTFS volume")
	ErrBitLocker    = errors.New("volume is BitLocker-encrypted")
	ErrBadFixup     = errors.New("update sequence mismatch (torn or corrupt multi-sector record)")
	ErrBadRecord    = errors.New("malformed MFT record")
	ErrBadAttribute = errors.New("malformed attribute")
	ErrBadRunlist   = errors.New("malformed runlist")
	ErrBadIndex     = errors.New("malformed index")
	ErrNotFound     = errors.New("file not found")
	ErrNotDirectory = errors.New("not a directory")
	ErrUnsupported  = errors.New("unsupported NTFS feature")
	ErrTruncated    = errors.New("structure lies past the end of the volume")
)

// FormatError reports malformed NTFS data: what structure, where (absolute
// byte offset in the volume), and the offending value.
type FormatError struct {
	Offset    int64
	Structure string
	Msg       string
	Value     any
	Err       error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("ntfs: %s at byte 0x%x: %s", e.Structure, e.Offset, e.Msg)
	switch v := e.Value.(type) {
	case nil:
	case string, []byte:
		// Raw on-disk bytes (an OEM ID, a signature) are quoted so that
		// NULs and control bytes never reach a terminal or a log as is.
		s += fmt.Sprintf(" (value %q)", v)
	default:
		s += fmt.Sprintf(" (value %v)", v)
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, structure string, sentinel error, value any, format string, args ...any) error {
	return &FormatError{Offset: off, Structure: structure, Msg: fmt.Sprintf(format, args...), Value: value, Err: sentinel}
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
