// Package export writes a disk view (normally the patched overlay) out as a
// standalone image: raw, sparse where the view is zero, or qcow2 (written
// directly), or as a thin qcow2 overlay whose backing file is the untouched
// source (through qemu-img). Holes the view reports (disk.Extenter) are
// skipped without reading them, and an export appears under its name only
// once it is complete, so an interrupted run leaves no partial file there.
package export

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/kvmify/kvmify/disk"
)

// chunkSize is the unit of copying and of hole detection: large enough for
// sequential throughput, small enough that sparse regions stay sparse.
const chunkSize = 1 << 20

// Progress is told how many bytes of total are done; it may be nil.
type Progress func(done, total int64)

// Extent is a range of the view that differs from the source.
type Extent struct {
	Offset, Length int64
	// Zero says the range reads as zeros (trimmed or zeroed). QCOW2Backed
	// finds that out from the data, so it needs no trust in the flag.
	Zero bool
}

// sparseBlock is the granularity of hole detection in data: zero runs of
// this size stay holes in a raw export (qemu-img convert's default -S).
const sparseBlock = 4096

// Raw writes the whole view to a new raw image at path, leaving holes where
// the view has them or reads as zeros; holes the view reports through
// disk.Extenter are not even read. The file appears under path only once
// complete (see createOut). It refuses to overwrite an existing file.
func Raw(ctx context.Context, src disk.Reader, path string, progress Progress) (err error) {
	o, err := createOut(path)
	if err != nil {
		return err
	}
	defer func() { err = o.finish(err) }()
	size := src.Size()
	if err := o.Truncate(size); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	p := newProgress(progress, size)
	buf := make([]byte, chunkSize)
	return dataRuns(ctx, src, func(off, n int64) error {
		for end := off + n; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(chunkSize, end-off)]
			if err := readView(src, b, off); err != nil {
				return err
			}
			if err := writeNonZero(o.File, b, off); err != nil {
				return fmt.Errorf("writing %s at byte %d: %w", path, off, err)
			}
			off += int64(len(b))
			p.add(int64(len(b)))
		}
		return nil
	}, func(_, n int64) { p.add(n) })
}

// readView fills b from the view at off.
func readView(src disk.Reader, b []byte, off int64) error {
	n, err := src.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading the view at byte %d: %w", off+int64(n), err)
}

// writeNonZero writes the runs of b that are not all zeros at sparseBlock
// granularity, so that zeros stay holes.
func writeNonZero(w io.WriterAt, b []byte, off int64) error {
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && !allZero(b[j:min(j+sparseBlock, len(b))]) {
			j = min(j+sparseBlock, len(b))
		}
		if j > i {
			if _, err := w.WriteAt(b[i:j], off+int64(i)); err != nil {
				return err
			}
			i = j
			continue
		}
		i = min(i+sparseBlock, len(b))
	}
	return nil
}

// progressCounter adds up the bytes done for a Progress callback.
type progressCounter struct {
	fn          Progress
	done, total int64
}

func newProgress(fn Progress, total int64) *progressCounter {
	return &progressCounter{fn: fn, total: total}
}

func (p *progressCounter) add(n int64) {
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

func allZero(b []byte) bool {
	var zero [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zero))
		if !bytes.Equal(b[:n], zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// QCOW2 writes the view as a standalone qcow2 image at path, directly (no
// temporary raw image): clusters the view has as holes or zeros are left
// unallocated. Like Raw, the file appears under path only once complete.
func QCOW2(ctx context.Context, src disk.Reader, path string, progress Progress) (err error) {
	o, err := createOut(path)
	if err != nil {
		return err
	}
	defer func() { err = o.finish(err) }()
	return writeQCOW2(ctx, src, o.File, newProgress(progress, src.Size()))
}

// QCOW2Backed writes a qcow2 image at path whose backing file is the source
// (raw, by absolute path) and which holds only the clusters the extents
// touch, read from the view (clusters that read as zeros are marked so):
// the smallest faithful export, and the source stays the evidence it was.
// Like Raw, the file appears under path only once complete.
func QCOW2Backed(ctx context.Context, view disk.Reader, sourcePath string, extents []Extent, path string, progress Progress) (err error) {
	abs, err := filepath.Abs(sourcePath)
	if err != nil {
		return err
	}
	o, err := createOut(path)
	if err != nil {
		return err
	}
	defer func() { err = o.finish(err) }()
	extents = slices.Clone(extents)
	slices.SortFunc(extents, func(a, b Extent) int { return cmp.Compare(a.Offset, b.Offset) })
	var total int64
	for _, e := range extents {
		total += e.Length
	}
	w := newQCOWWriter(o.File, view.Size(), abs, newProgress(progress, total))
	for _, e := range extents {
		if e.Offset < 0 || e.Length < 0 || e.Offset > view.Size()-e.Length {
			return fmt.Errorf("changed extent of %d bytes at byte %d is outside the %d-byte view", e.Length, e.Offset, view.Size())
		}
		if err := w.copyRange(ctx, view, e.Offset, e.Offset+e.Length); err != nil {
			return err
		}
	}
	return w.finish()
}
