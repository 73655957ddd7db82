package disk

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// maxSourceExtents bounds the lseek work of one Extents call on a badly
// fragmented file; callers ask again from where the answer stopped.
const maxSourceExtents = 4096

var _ Extenter = (*Source)(nil)

// Extents reports the source's holes (ExtentHole|ExtentZero) and data (0)
// from off on, as the file system knows them from SEEK_DATA and SEEK_HOLE.
// Data is never read to look for zeros, as that would cost a read of the
// whole range. A block device, or a file system that cannot report holes,
// is one data extent to the end.
//
// lseek moves the descriptor's shared file offset, but every read of a
// Source uses pread (ReadAt), which ignores that offset, and each lseek here
// names its absolute start, so concurrent calls and reads stay correct.
func (s *Source) Extents(off, length int64) ([]Extent, error) {
	if err := checkExtentsRange(off, length, s.size); err != nil {
		return nil, fmt.Errorf("%s: %w", s.f.Name(), err)
	}
	if s.dev {
		return []Extent{{Length: s.size - off}}, nil
	}
	rc, err := s.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.f.Name(), err)
	}
	var out extentList
	var serr error
	// Control keeps the descriptor referenced while lseek uses it, so a
	// Source closed meanwhile fails cleanly instead of naming a reused fd.
	if err := rc.Control(func(fd uintptr) { out, serr = s.extents(int(fd), off, off+length) }); err != nil {
		return nil, fmt.Errorf("%s: %w", s.f.Name(), err)
	}
	return out, serr
}

func (s *Source) extents(fd int, off, end int64) (extentList, error) {
	var out extentList
	for pos := off; pos < end && len(out) < maxSourceExtents; {
		if r, ok := s.runs.lookup(pos); ok {
			out.add(r.end-pos, r.flags)
			pos = r.end
			continue
		}
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			// No data at or after pos: the rest is a hole (including an
			// implicit one where the file shrank below s.size).
			out.add(s.size-pos, ExtentHole|ExtentZero)
			return out, nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
			// The file system cannot tell holes from data.
			out.add(s.size-pos, 0)
			return out, nil
		case err != nil:
			return nil, fmt.Errorf("%s: lseek SEEK_DATA at byte %d: %w", s.f.Name(), pos, err)
		}
		if data > pos {
			data = min(data, s.size)
			out.add(data-pos, ExtentHole|ExtentZero)
			s.runs.remember(pos, data, ExtentHole|ExtentZero)
			pos = data
			continue
		}
		hole, err := unix.Seek(fd, pos, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("%s: lseek SEEK_HOLE at byte %d: %w", s.f.Name(), pos, err)
		}
		if hole <= pos || hole > s.size {
			// Only a concurrent change to the file gets here; calling the
			// rest data is always safe.
			hole = s.size
		}
		out.add(hole-pos, 0)
		s.runs.remember(pos, hole, 0)
		pos = hole
	}
	return out, nil
}

// checkExtentsRange validates an Extents request of length bytes at off on a
// disk of size bytes, as the Extenter contract requires.
func checkExtentsRange(off, length, size int64) error {
	if off < 0 || length <= 0 || off >= size || length > size-off {
		return fmt.Errorf("extents of %d bytes at offset %d on a %d-byte disk: %w", length, off, size, ErrOutOfRange)
	}
	return nil
}

// extentList builds an Extents answer, merging a run into the previous one
// when their flags are equal so that adjacent extents always differ.
type extentList []Extent

func (l *extentList) add(length int64, flags ExtentFlags) {
	if length <= 0 {
		return
	}
	if k := len(*l) - 1; k >= 0 && (*l)[k].Flags == flags {
		(*l)[k].Length += length
		return
	}
	*l = append(*l, Extent{Length: length, Flags: flags})
}

// CheckExtents reports how exts, an Extents answer for length bytes at off
// on a disk of size bytes, breaks the Extenter contract, or nil if it keeps
// it; servers and tests use it to distrust a layer's answer.
func CheckExtents(exts []Extent, off, length, size int64) error {
	if err := checkExtentsRange(off, length, size); err != nil {
		return err
	}
	if len(exts) == 0 {
		return fmt.Errorf("extents at offset %d: empty answer", off)
	}
	pos := off
	for i, e := range exts {
		switch {
		case e.Length <= 0:
			return fmt.Errorf("extent %d at offset %d: length %d is not positive", i, pos, e.Length)
		case e.Length > size-pos:
			return fmt.Errorf("extent %d at offset %d: length %d runs past the disk's %d bytes", i, pos, e.Length, size)
		case e.Flags&^(ExtentHole|ExtentZero) != 0:
			return fmt.Errorf("extent %d at offset %d: unknown flags %#x", i, pos, uint32(e.Flags))
		case i > 0 && e.Flags == exts[i-1].Flags:
			return fmt.Errorf("extent %d at offset %d: flags %#x equal the previous extent's", i, pos, uint32(e.Flags))
		}
		pos += e.Length
	}
	return nil
}

// runCache remembers the last run of one allocation state that lseek
// found. Sequential readers such as nbdcopy ask for the extents of one
// chunk after another, and on tmpfs, whose SEEK_HOLE walks the page cache
// up to the next hole, asking the kernel each time cost a walk of the whole
// data run per chunk. A source is read-only and never changes while open,
// so a run once found stays true.
type runCache struct {
	mu    sync.Mutex
	start int64
	end   int64 // start == end: nothing cached
	flags ExtentFlags
}

type cachedRun struct {
	end   int64
	flags ExtentFlags
}

func (c *runCache) lookup(pos int64) (cachedRun, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pos < c.start || pos >= c.end {
		return cachedRun{}, false
	}
	return cachedRun{end: c.end, flags: c.flags}, true
}

func (c *runCache) remember(start, end int64, flags ExtentFlags) {
	c.mu.Lock()
	c.start, c.end, c.flags = start, end, flags
	c.mu.Unlock()
}
