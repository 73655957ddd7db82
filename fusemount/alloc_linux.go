//go:build linux

package fusemount

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/kvmify/kvmify/disk"
)

// allocQueryBudget bounds the Extents calls one stat of the disk may make
// to count allocated blocks; what lies beyond counts as allocated.
const allocQueryBudget = 8

var _ = (fs.NodeLseeker)((*diskNode)(nil))

// Lseek answers SEEK_DATA and SEEK_HOLE from the disk's extents, so that
// cp --sparse, qemu-img and other copiers skip what reads as zeros. Only
// runs flagged disk.ExtentZero are holes here: a hole must read as zeros,
// whatever its allocation. A disk without extents is all data, as the kernel
// would assume.
func (d *diskNode) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4 // whence values of lseek(2)
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	size := d.disk.Size()
	if off >= uint64(size) {
		return 0, syscall.ENXIO
	}
	wantHole := whence == seekHole
	e, ok := d.disk.(disk.Extenter)
	if !ok {
		if wantHole {
			return uint64(size), fs.OK
		}
		return off, fs.OK
	}
	for pos := int64(off); pos < size; {
		if ctx.Err() != nil {
			return 0, syscall.EINTR
		}
		exts, err := extentsAt(e, pos, size)
		if err != nil {
			return 0, errnoOf(err)
		}
		for _, x := range exts {
			if (x.Flags&disk.ExtentZero != 0) == wantHole {
				return uint64(pos), fs.OK
			}
			pos += x.Length
		}
	}
	if wantHole {
		return uint64(size), fs.OK // the implicit hole at the end of a file
	}
	return 0, syscall.ENXIO
}

// allocatedBytes estimates the disk's allocated bytes for st_blocks: all of
// it, less the holes found within a few Extents calls. Copiers such as cp
// look for holes only in files whose st_blocks is below their size.
func (d *diskNode) allocatedBytes() int64 {
	size := d.disk.Size()
	e, ok := d.disk.(disk.Extenter)
	if !ok || size == 0 {
		return size
	}
	alloc := size
	pos := int64(0)
	for range allocQueryBudget {
		exts, err := extentsAt(e, pos, size)
		if err != nil {
			return size
		}
		for _, x := range exts {
			if x.Flags&disk.ExtentHole != 0 {
				alloc -= x.Length
			}
			pos += x.Length
		}
		if pos == size {
			break
		}
	}
	return alloc
}

// extentsAt asks e for the rest of the disk from pos and checks the answer,
// so that a bad layer yields an error rather than a loop that never ends.
func extentsAt(e disk.Extenter, pos, size int64) ([]disk.Extent, error) {
	exts, err := e.Extents(pos, size-pos)
	if err != nil {
		return nil, err
	}
	if err := disk.CheckExtents(exts, pos, size-pos, size); err != nil {
		return nil, fmt.Errorf("disk extents: %w", err)
	}
	return exts, nil
}

// errnoOf keeps an error's own errno and reports anything else as EIO; an
// ENOSYS answer would make the kernel stop asking for the mount's lifetime.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != syscall.ENOSYS {
		return errno
	}
	return syscall.EIO
}
