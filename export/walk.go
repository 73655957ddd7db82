package export

import (
	"context"
	"fmt"

	"github.com/kvmify/kvmify/disk"
)

// dataRuns calls fn for each run of the view that may hold data, in order:
// everything, unless the view is a disk.Extenter, whose holes and zeroed
// runs (the overlay's and, beneath unchanged blocks, the source file's) are
// skipped without being read. skipped is told about every byte passed over,
// so that progress covers the whole disk.
func dataRuns(ctx context.Context, src disk.Reader, fn func(off, n int64) error, skipped func(off, n int64)) error {
	size := src.Size()
	e, ok := src.(disk.Extenter)
	if !ok {
		if size == 0 {
			return nil
		}
		return fn(0, size)
	}
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		exts, err := e.Extents(pos, size-pos)
		if err == nil {
			err = disk.CheckExtents(exts, pos, size-pos, size)
		}
		if err != nil {
			return fmt.Errorf("extents of the view at byte %d: %w", pos, err)
		}
		for _, x := range exts {
			n := min(x.Length, size-pos)
			if x.Flags&disk.ExtentZero != 0 {
				if skipped != nil {
					skipped(pos, n)
				}
			} else if err := fn(pos, n); err != nil {
				return err
			}
			pos += n
		}
	}
	return nil
}
