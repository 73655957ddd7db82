// Package splitraw reads a raw disk image cut into numbered segment files
// (dd | split's NAME.aa, NAME.ab, …; FTK Imager's NAME.001, NAME.002, …) as
// one read-only disk: the concatenation of the segments in order.
//
// Segment sizes may differ and the last may be short, but a set whose
// numbering has a gap, or whose earlier segment is shorter than the first,
// is refused with the file named: reading on would shift every later byte.
package splitraw

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/kvmify/kvmify/disk"
)

// ErrMissingSegment is wrapped by errors for a gap in a set's numbering.
var ErrMissingSegment = errors.New("segment missing")

// ErrTruncated is wrapped by errors for a segment shorter than the set
// needs, found at open or while reading.
var ErrTruncated = errors.New("segment truncated")

// ErrNotFirst is wrapped by the error for opening a later segment of a set.
var ErrNotFirst = errors.New("not the first segment of the set")

// FormatError locates a fault in a split set: the segment file and the byte
// offset within it.
type FormatError struct {
	Path   string
	Offset int64
	Msg    string
	Err    error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("split raw %s at byte %d: %s", e.Path, e.Offset, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

// Image is an open split raw set.
type Image struct {
	segs  []*disk.Source
	start []int64 // start[i] is segment i's first byte in the image; start[len(segs)] is Size
}

var (
	_ disk.Reader   = (*Image)(nil)
	_ disk.Extenter = (*Image)(nil)
)

// Segments lists the segment files of the split set that first begins, in
// order, or returns nil when first's name follows no segment numbering or
// no second segment exists beside it (so it is a plain file). A gap in the
// numbering, or first being a later segment of a set, is an error.
func Segments(first string) ([]string, error) {
	p, idx, ok := parseName(first)
	if !ok {
		return nil, nil
	}
	if idx != p.first {
		if prev := p.name(idx - 1); exists(prev) {
			return nil, &FormatError{Path: first, Msg: fmt.Sprintf("open the set's first segment %s", p.name(p.first)), Err: ErrNotFirst}
		}
		return nil, nil
	}
	var names []string
	for i := idx; ; i++ {
		n := p.name(i)
		if !exists(n) {
			break
		}
		names = append(names, n)
	}
	next := idx + len(names)
	if last := p.lastPresent(); last >= next {
		return nil, &FormatError{Path: p.name(next), Msg: fmt.Sprintf("segment %d of the set is missing but %s exists", next-idx+1, p.name(last)), Err: ErrMissingSegment}
	}
	if len(names) < 2 {
		return nil, nil
	}
	return names, nil
}

// Open opens the split set that the segment file first begins, finding the
// later segments beside it. A file that begins no set opens as a
// one-segment image.
func Open(first string) (*Image, error) {
	names, err := Segments(first)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{first}
	}
	return OpenFiles(names)
}

// OpenFiles opens the given segment files, read-only, as one image in the
// order given. Every segment but the last must be at least as long as the
// first: a shorter one was cut off.
func OpenFiles(paths []string) (*Image, error) {
	if len(paths) == 0 {
		return nil, errors.New("split raw: no segment files")
	}
	im := &Image{start: []int64{0}}
	for i, p := range paths {
		s, err := disk.OpenSource(p)
		if err != nil {
			im.Close()
			return nil, fmt.Errorf("split raw segment %d: %w", i+1, err)
		}
		im.segs = append(im.segs, s)
		switch {
		case s.Size() == 0:
			im.Close()
			return nil, &FormatError{Path: p, Msg: "segment is empty", Err: ErrTruncated}
		case i > 0 && i < len(paths)-1 && s.Size() < im.segs[0].Size():
			err := &FormatError{Path: p, Offset: s.Size(), Msg: fmt.Sprintf("segment ends after %d bytes, the first segment holds %d", s.Size(), im.segs[0].Size()), Err: ErrTruncated}
			im.Close()
			return nil, err
		}
		im.start = append(im.start, im.start[i]+s.Size())
	}
	return im, nil
}

// Size is the sum of the segments' sizes.
func (im *Image) Size() int64 { return im.start[len(im.segs)] }

// Format names the container for reports.
func (im *Image) Format() string { return "split-raw" }

// InputFiles lists every segment file as an absolute path.
func (im *Image) InputFiles() []string {
	var out []string
	for _, s := range im.segs {
		out = append(out, s.InputFiles()...)
	}
	return out
}

// Close closes every segment.
func (im *Image) Close() error {
	var err error
	for _, s := range im.segs {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	im.segs = nil
	return err
}

// segAt is the index of the segment holding image byte off (< Size).
func (im *Image) segAt(off int64) int {
	return sort.Search(len(im.segs), func(i int) bool { return im.start[i+1] > off })
}

// ReadAt reads across segment boundaries. A read ending past Size returns
// io.EOF with the bytes before it, as a file does; a segment that has
// shrunk since it was opened is an error naming it, never zeros.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("split raw: negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= im.Size() {
			return n, io.EOF
		}
		i := im.segAt(pos)
		s := im.segs[i]
		segOff := pos - im.start[i]
		want := min(int64(len(p)-n), s.Size()-segOff)
		m, err := s.ReadAt(p[n:n+int(want)], segOff)
		n += m
		if m < int(want) {
			if err == nil || errors.Is(err, io.EOF) {
				err = ErrTruncated
			}
			return n, &FormatError{Path: s.Name(), Offset: segOff + int64(m), Msg: "reading segment", Err: err}
		}
	}
	return n, nil
}

// Extents joins the segments' own hole maps.
func (im *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if err := disk.CheckExtents([]disk.Extent{{Length: length}}, off, length, im.Size()); err != nil {
		return nil, err
	}
	var out []disk.Extent
	end := off + length
	for pos := off; pos < end; {
		i := im.segAt(pos)
		s := im.segs[i]
		segOff := pos - im.start[i]
		n := min(end-pos, s.Size()-segOff)
		exts, err := s.Extents(segOff, n)
		if err != nil {
			return nil, err
		}
		for _, e := range exts {
			e.Length = min(e.Length, n)
			n -= e.Length
			pos += e.Length
			if k := len(out) - 1; k >= 0 && out[k].Flags == e.Flags {
				out[k].Length += e.Length
			} else {
				out = append(out, e)
			}
			if n == 0 {
				break
			}
		}
		if len(out) > 4096 {
			break
		}
	}
	return out, nil
}
