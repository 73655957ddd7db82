package disk

import "os"

// FileRanger is implemented by disks that can say when a range reads
// exactly as bytes of a file nobody writes while it is open, so a server
// can send them with sendfile(2) instead of copying them through memory.
type FileRanger interface {
	// FileRange reports whether [off, off+n) reads as [foff, foff+n) of f.
	FileRange(off, n int64) (f *os.File, foff int64, ok bool)
}

// FileRange maps any in-range access of a regular-file source to the file
// itself. Block devices are left to ReadAt: a failing sector should fail one
// request, not tear a reply half-sent by the kernel.
func (s *Source) FileRange(off, n int64) (*os.File, int64, bool) {
	if s.dev || off < 0 || n < 0 || off > s.size || n > s.size-off {
		return nil, 0, false
	}
	return s.f, off, true
}
