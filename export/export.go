// Package export writes a disk view (normally the patched overlay) out as a
// standalone image: raw, sparse where the view is zero, or qcow2 through
// qemu-img, either standalone or as a thin overlay whose backing file is the
// untouched source.
package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
	Zero           bool // reads as zeros (trimmed or zeroed)
}

// Raw writes the whole view to a new raw image at path, leaving holes where
// the view reads as zeros. It refuses to overwrite an existing file.
func Raw(ctx context.Context, src disk.Reader, path string, progress Progress) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	size := src.Size()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	for off := int64(0); off < size; off += chunkSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(chunkSize)
		if size-off < n {
			n = size - off
		}
		b := buf[:n]
		if _, err := src.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading view at %d: %w", off, err)
		}
		if !allZero(b) {
			if _, err := f.WriteAt(b, off); err != nil {
				return fmt.Errorf("writing %s at %d: %w", path, off, err)
			}
		}
		if progress != nil {
			progress(off+n, size)
		}
	}
	return f.Sync()
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

// QCOW2 writes the view as a standalone qcow2 image at path (through a
// temporary sparse raw file beside it, converted by qemu-img).
func QCOW2(ctx context.Context, src disk.Reader, path string, progress Progress) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kvmify-export-*.raw")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	tmp.Close()
	os.Remove(tmpName)
	defer os.Remove(tmpName)
	if err := Raw(ctx, src, tmpName, progress); err != nil {
		return err
	}
	return qemuImg(ctx, "convert", "-f", "raw", "-O", "qcow2", tmpName, path)
}

// QCOW2Backed writes a qcow2 image at path whose backing file is the source
// (raw, by absolute path) and which holds only the changed extents, read
// from the view: the smallest faithful export, and the source stays the
// evidence it was.
func QCOW2Backed(ctx context.Context, view disk.Reader, sourcePath string, extents []Extent, path string, progress Progress) (err error) {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	abs, err := filepath.Abs(sourcePath)
	if err != nil {
		return err
	}
	if err := qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", abs, path, fmt.Sprint(view.Size())); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	var total int64
	for _, e := range extents {
		total += e.Length
	}
	// qemu-io parses its commands on spaces, so the data files live in a
	// temporary directory whose path has none.
	tmpDir, err := os.MkdirTemp("", "kvmify-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)

	// qemu-io takes the data of each write from a file; batch the writes so
	// one qemu-io process handles up to batchBytes of data.
	const batchBytes = 64 << 20
	var cmds []string
	var pending, done int64
	flush := func() error {
		if len(cmds) == 0 {
			return nil
		}
		args := []string{"-f", "qcow2"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		args = append(args, path)
		if err := run(ctx, "qemu-io", args...); err != nil {
			return err
		}
		done += pending
		if progress != nil {
			progress(done, total)
		}
		cmds, pending = cmds[:0], 0
		os.RemoveAll(tmpDir)
		return os.Mkdir(tmpDir, 0o700)
	}
	for _, e := range extents {
		for off := e.Offset; off < e.Offset+e.Length; {
			n := min(e.Offset+e.Length-off, int64(batchBytes))
			if e.Zero {
				cmds = append(cmds, fmt.Sprintf("write -q -z %d %d", off, n))
			} else {
				data := make([]byte, n)
				if _, err := view.ReadAt(data, off); err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("reading view at %d: %w", off, err)
				}
				name := filepath.Join(tmpDir, fmt.Sprintf("%d", off))
				if err := os.WriteFile(name, data, 0o600); err != nil {
					return err
				}
				cmds = append(cmds, fmt.Sprintf("write -q -s %s %d %d", name, off, n))
			}
			pending += n
			off += n
			if pending >= batchBytes || len(cmds) >= 256 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

func qemuImg(ctx context.Context, args ...string) error { return run(ctx, "qemu-img", args...) }

func run(ctx context.Context, name string, args ...string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s is needed for this export format: %w", name, err)
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args[:min(2, len(args))], " "), err, bytes.TrimSpace(out))
	}
	return nil
}
