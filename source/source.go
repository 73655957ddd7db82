// Package source opens whatever the user names as a read-only disk: a raw
// file or block device, a split raw set, an EWF (E01) evidence set, a VM
// container (VHD, VHDX, VMDK, qcow2) or an NBD URI. The reader is chosen by
// the file's content, never by its name alone; a name only finds the later
// segments of a split raw set whose first segment holds raw bytes.
package source

import (
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/nbdclient"
	"github.com/kvmify/kvmify/qcow2"
	"github.com/kvmify/kvmify/splitraw"
	"github.com/kvmify/kvmify/vhd"
	"github.com/kvmify/kvmify/vhdx"
	"github.com/kvmify/kvmify/vmdk"
)

// Image is an opened source: a read-only disk plus what the CLI needs to
// report and protect it. Readers that know their holes also implement
// disk.Extenter.
type Image interface {
	disk.Reader
	Close() error
	// InputFiles lists, as absolute paths, every file the image reads
	// (segments, extents, backing files), so no output may be one of them.
	InputFiles() []string
	// Format names the container ("raw", "split-raw", "ewf", "qcow2", …).
	Format() string
}

// ErrNotBuiltIn is wrapped by the error for a recognised container whose
// reader this build lacks.
var ErrNotBuiltIn = errors.New("reader not built in")

// ErrUnsupported is wrapped by the error for a recognised container that
// kvmify does not read as a disk (EWF2, logical evidence).
var ErrUnsupported = errors.New("unsupported container")

// opener opens one container format from its path.
type opener func(path string) (Image, error)

// adapt turns a format package's Open into an opener, keeping a failed
// open from becoming a non-nil interface holding a nil pointer.
func adapt[T Image](open func(string) (T, error)) opener {
	return func(path string) (Image, error) {
		im, err := open(path)
		if err != nil {
			return nil, err
		}
		return im, nil
	}
}

// readerFor is the dispatch table: the reader of each container kind, or
// nil when the kind is recognised but its reader is not built in. Adding a
// reader is one line here.
func readerFor(k Kind) opener {
	switch k {
	case KindEWF:
		return adapt(ewf.Open)
	case KindVHD:
		return adapt(vhd.Open)
	case KindVHDX:
		return adapt(vhdx.Open)
	case KindVMDK:
		return adapt(vmdk.Open)
	case KindQCOW2:
		return adapt(qcow2.Open)
	}
	return nil
}

// Open opens name read-only as a disk. name is an NBD URI (nbd://HOST[:PORT]/
// EXPORT, nbd+unix:///EXPORT?socket=PATH) or a path; a path's format is told
// by its content (see Detect).
func Open(name string) (Image, error) {
	if nbdclient.IsURI(name) {
		c, err := nbdclient.Dial(name)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	src, err := disk.OpenSource(name)
	if err != nil {
		return nil, err
	}
	kind, err := detectSource(src)
	if err != nil {
		src.Close()
		return nil, err
	}
	if kind == KindRaw {
		if src.IsBlockDevice() {
			return rawImage{src}, nil
		}
		segs, err := splitraw.Segments(name)
		if err != nil {
			src.Close()
			return nil, err
		}
		if segs == nil {
			return rawImage{src}, nil
		}
		src.Close()
		im, err := splitraw.OpenFiles(segs)
		if err != nil {
			return nil, err
		}
		return im, nil
	}
	src.Close()
	switch kind {
	case KindEWF2:
		return nil, fmt.Errorf("%s: %s (EnCase 7 Ex01) recognised: %w; convert it to E01 with ewfexport -f encase6", name, kind, ErrUnsupported)
	case KindLEF:
		return nil, fmt.Errorf("%s: EWF logical evidence (L01) recognised: %w; it holds files, not a disk", name, ErrUnsupported)
	}
	open := readerFor(kind)
	if open == nil {
		return nil, fmt.Errorf("%s: format %s recognised; %w", name, kind, ErrNotBuiltIn)
	}
	return open(name)
}

// detectSource reads the head and tail of src and detects its kind.
func detectSource(src *disk.Source) (Kind, error) {
	size := src.Size()
	head := make([]byte, min(size, HeadSize))
	if _, err := src.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%s: reading the first %d bytes: %w", src.Name(), len(head), err)
	}
	tail := make([]byte, min(size, TailSize))
	if _, err := src.ReadAt(tail, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%s: reading the last %d bytes: %w", src.Name(), len(tail), err)
	}
	return Detect(head, tail), nil
}

// rawImage is a raw file or block device; embedding keeps the source's
// optional abilities (Extents, FileRange for sendfile, File for identity).
type rawImage struct{ *disk.Source }

// Format is "raw", or "block-device".
func (r rawImage) Format() string {
	if r.IsBlockDevice() {
		return "block-device"
	}
	return "raw"
}

// IsURI reports whether name is an NBD URI rather than a path.
func IsURI(name string) bool { return nbdclient.IsURI(name) }
