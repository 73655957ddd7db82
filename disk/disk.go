// Package disk defines the block-device surface that every layer of kvmify
// (source image, overlay, patched view) offers, and opens source images
// read-only.
//
// The required part is small (ReaderAt plus Size); optional abilities are
// one-method interfaces that servers probe by type assertion, in the manner
// of go-fuse's fs package and nbdkit's can_* callbacks.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Reader is a fixed-size, randomly readable disk.
type Reader interface {
	io.ReaderAt
	// Size is the disk's length in bytes; it never changes.
	Size() int64
}

// Writer is implemented by disks that accept writes; a write past Size fails.
type Writer interface {
	io.WriterAt
}

// Flusher is implemented by disks whose acknowledged writes become durable
// only on Flush.
type Flusher interface {
	Flush() error
}

// Trimmer is implemented by disks that can discard a range; discarded bytes
// read back as zeros.
type Trimmer interface {
	Trim(off, length int64) error
}

// Zeroer is implemented by disks that can zero a range without a data
// payload.
type Zeroer interface {
	Zero(off, length int64) error
}

// Write is a run of bytes planned for Offset of the disk or volume it was
// planned against; What names the structure it changes, for people
// ("hive data", "mft-record", "$Bitmap"). Planners return Writes and never
// apply them; only an overlay does.
type Write struct {
	Offset int64
	Data   []byte
	What   string
}

// ErrReadOnly is returned by writes to a disk that was opened read-only.
var ErrReadOnly = errors.New("disk is read-only")

// ErrOutOfRange is returned for an access that does not lie within the disk.
var ErrOutOfRange = errors.New("access beyond the end of the disk")

// Source is a source image opened read-only: a regular file or a block
// device.
type Source struct {
	f    *os.File
	size int64
	dev  bool
	abs  string   // absolute path, for InputFiles
	runs runCache // the allocation run Extents found last
}

// OpenSource opens path with O_RDONLY. It never opens for writing, so even a
// bug elsewhere cannot modify the source through this handle.
func OpenSource(path string) (*Source, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &Source{f: f, abs: abs}
	switch {
	case fi.Mode().IsRegular():
		s.size = fi.Size()
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		// A block device's size is where a seek to its end lands.
		n, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: block device size: %w", path, err)
		}
		s.size = n
		s.dev = true
	default:
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file or block device", path)
	}
	return s, nil
}

// ReadAt reads from the source. Reads that end past Size return io.EOF with
// the bytes that exist, as os.File does.
func (s *Source) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// Size is the source's length in bytes.
func (s *Source) Size() int64 { return s.size }

// Name is the path the source was opened with.
func (s *Source) Name() string { return s.f.Name() }

// File gives the underlying read-only file, for identity checks (stat) and
// fingerprinting.
func (s *Source) File() *os.File { return s.f }

// InputFiles lists the absolute path of every file the source reads (here
// the one image file), so a caller can refuse to write over any of them.
func (s *Source) InputFiles() []string { return []string{s.abs} }

// IsBlockDevice reports whether the source is a block device.
func (s *Source) IsBlockDevice() bool { return s.dev }

// Close releases the source.
func (s *Source) Close() error { return s.f.Close() }

// ExtentFlags describe how a run of a disk is stored; the bits equal the
// NBD base:allocation flags so a server can pass them through unchanged.
type ExtentFlags uint32

const (
	// ExtentHole marks a run with no storage allocated behind it.
	ExtentHole ExtentFlags = 1 << 0
	// ExtentZero marks a run known to read back as zeros.
	ExtentZero ExtentFlags = 1 << 1
)

// Extent is a run of Length bytes with one allocation state. A zero Flags
// value means allocated data, which may still happen to be zeros.
type Extent struct {
	Length int64
	Flags  ExtentFlags
}

// Extenter is implemented by disks that can tell data from holes and zeroed
// runs, so copies and servers can skip what needs no reading.
type Extenter interface {
	// Extents describes the disk from off on, in order and without gaps:
	// the first extent starts at off, each next one where the previous ends.
	// It covers at least one byte and may stop before off+length (callers
	// ask again from where it stopped) or run past it, never past Size.
	// Adjacent extents have different Flags. off+length must not exceed Size
	// and length must be positive.
	Extents(off, length int64) ([]Extent, error)
}

// QuickWriter is implemented by disks for which some writes need nothing
// read from a slower layer first (an overlay whose blocks are written whole
// or already held), so a server can do those at once instead of handing
// them to a worker.
type QuickWriter interface {
	// QuickWriteAt writes p at off, as WriteAt does, when that reads
	// nothing from a lower layer. Otherwise it writes nothing and reports
	// done false. It must not keep p: the NBD server passes the buffer it
	// receives requests in, which the next request overwrites.
	QuickWriteAt(p []byte, off int64) (done bool, err error)
}
