// Package vmdk reads VMware VMDK images read-only: monolithicSparse and
// twoGbMaxExtentSparse (hosted sparse extents), monolithicFlat and
// twoGbMaxExtentFlat (text descriptor plus flat extents), ZERO extents and
// streamOptimized (compressed grains with markers). A parent disk named by
// the descriptor is followed read-only.
package vmdk

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
)

// Cache budgets in bytes and the parent chain limit.
const (
	gtCacheBytes    = 16 << 20
	grainCacheBytes = 16 << 20
	maxParentDepth  = 16
)

// Image is an open VMDK disk; it is safe for concurrent ReadAt.
type Image struct {
	path       string
	createType string
	size       int64
	extents    []*extent
	files      []*container.File
	parent     *Image
}

// extent is one extent of the disk, at start bytes.
type extent struct {
	start, size int64
	typ         string
	flat        *container.File // FLAT/VMFS
	flatOffset  int64
	sparse      *sparseExtent // SPARSE
}

var _ disk.Extenter = (*Image)(nil)

// Open opens the VMDK at path (a descriptor or a sparse extent with an
// embedded descriptor), its extents and parents, read-only.
func Open(path string) (*Image, error) { return open(path, 0) }

func open(path string, depth int) (*Image, error) {
	f, err := container.OpenFile(path)
	if err != nil {
		return nil, err
	}
	img := &Image{path: f.Path, files: []*container.File{f}}
	if err := img.load(f, depth); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

func (img *Image) load(f *container.File, depth int) error {
	head := make([]byte, min(f.Size, headerSize))
	if _, err := f.ReadAt(head, 0); err != nil {
		return err
	}
	if !Sniff(head) {
		return &FormatError{File: f.Path, What: "magic (neither a sparse extent nor a descriptor)", Err: ErrNotVMDK}
	}
	gts := container.NewCache(gtCacheBytes / (maxGTEsPerGT * 4))
	var d *descriptor
	if binary.LittleEndian.Uint32(head) == sparseMagic {
		s, err := openSparse(f, 0, gts, nil)
		if err != nil {
			return err
		}
		s.grainCache = container.NewCache(int(grainCacheBytes / s.grainBytes))
		// An embedded descriptor gives the create type and the parent;
		// the file itself is the only extent.
		img.createType = "monolithicSparse"
		if s.h.DescriptorOffset != 0 && s.h.DescriptorSize != 0 {
			off, n := int64(s.h.DescriptorOffset)*sectorSize, int64(s.h.DescriptorSize)*sectorSize
			if off > f.Size || n > f.Size-off {
				return &FormatError{File: f.Path, Offset: 28, What: "embedded descriptor not inside the file", Value: off, Err: ErrCorrupt}
			}
			b := make([]byte, n)
			if _, err := f.ReadAt(b, off); err != nil {
				return err
			}
			if d, err = parseDescriptor(string(b), f.Path); err != nil {
				return err
			}
			if d.CreateType != "" {
				img.createType = d.CreateType
			}
		}
		img.extents = []*extent{{size: s.capacity(), typ: "SPARSE", sparse: s}}
		img.size = s.capacity()
	} else {
		if f.Size > maxDescriptorSize {
			return &FormatError{File: f.Path, What: "descriptor file larger than 1 MiB", Value: f.Size, Err: ErrCorrupt}
		}
		b := make([]byte, f.Size)
		if _, err := f.ReadAt(b, 0); err != nil {
			return err
		}
		var err error
		if d, err = parseDescriptor(string(b), f.Path); err != nil {
			return err
		}
		img.createType = d.CreateType
		if err := img.openExtents(d, gts); err != nil {
			return err
		}
	}
	if d != nil && d.ParentCID != noParent {
		if d.ParentFileNameHint == "" {
			return &FormatError{File: f.Path, What: "descriptor names a parentCID but no parentFileNameHint", Value: d.ParentCID, Err: ErrCorrupt}
		}
		if depth+1 >= maxParentDepth {
			return &FormatError{File: f.Path, What: "parent chain deeper than 16 (or a loop)", Value: d.ParentFileNameHint, Err: ErrUnsupported}
		}
		p := d.ParentFileNameHint
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(f.Path), p)
		}
		parent, err := open(p, depth+1)
		if err != nil {
			return fmt.Errorf("%s: parent disk: %w", f.Path, err)
		}
		img.parent = parent
	}
	return nil
}

// openExtents opens the extents a text descriptor lists, relative to its
// directory.
func (img *Image) openExtents(d *descriptor, gts *container.Cache) error {
	grains := container.NewCache(grainCacheBytes / (64 << 10))
	dir := filepath.Dir(img.path)
	for i, l := range d.Extents {
		bad := func(what string, v any, err error) error {
			return &FormatError{File: img.path, Offset: int64(l.Line), What: fmt.Sprintf("descriptor line %d: %s", l.Line, what), Value: v, Err: err}
		}
		if l.Access == "NOACCESS" {
			return bad("NOACCESS extent", l.File, ErrUnsupported)
		}
		e := &extent{start: img.size, size: l.Sectors * sectorSize, typ: l.Type}
		if img.size > maxCapacity*sectorSize-e.size {
			return bad("extents larger than 64 TiB in total", img.size, ErrCorrupt)
		}
		var f *container.File
		if l.Type != "ZERO" {
			p := l.File
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			var err error
			if f, err = container.OpenFile(p); err != nil {
				return fmt.Errorf("%s: descriptor line %d: extent: %w", img.path, l.Line, err)
			}
			img.files = append(img.files, f)
		}
		switch l.Type {
		case "ZERO":
		case "FLAT", "VMFS":
			e.flat, e.flatOffset = f, l.Offset*sectorSize
			if e.flatOffset > f.Size || e.size > f.Size-e.flatOffset {
				return &FormatError{File: f.Path, Offset: f.Size, What: fmt.Sprintf("flat extent (descriptor line %d) needs %d bytes from offset %d; the file is truncated", l.Line, e.size, e.flatOffset), Value: f.Size, Err: ErrCorrupt}
			}
		case "SPARSE":
			s, err := openSparse(f, int64(i), gts, grains)
			if err != nil {
				return err
			}
			if s.capacity() < e.size {
				return &FormatError{File: f.Path, Offset: 12, What: fmt.Sprintf("sparse extent capacity smaller than descriptor line %d says", l.Line), Value: s.capacity(), Err: ErrCorrupt}
			}
			if s.grainBytes > 64<<10 {
				// Budget the shared grain cache by the largest grain.
				grains = container.NewCache(int(grainCacheBytes / s.grainBytes))
				s.grainCache = grains
			}
			e.sparse = s
		default:
			return bad("extent type", l.Type, ErrUnsupported)
		}
		img.extents = append(img.extents, e)
		img.size += e.size
	}
	return nil
}

// Size is the logical disk size in bytes.
func (img *Image) Size() int64 { return img.size }

// Format names the container and its create type, as "vmdk/streamOptimized".
func (img *Image) Format() string {
	if img.createType == "" {
		return "vmdk"
	}
	return "vmdk/" + img.createType
}

// InputFiles lists the absolute paths of the descriptor, every extent and
// the parents' files.
func (img *Image) InputFiles() []string {
	var out []string
	for _, f := range img.files {
		out = append(out, f.Path)
	}
	if img.parent != nil {
		out = append(out, img.parent.InputFiles()...)
	}
	return out
}

// Close closes every file of the disk and its parents.
func (img *Image) Close() error {
	var err error
	for _, f := range img.files {
		if e := f.Close(); err == nil {
			err = e
		}
	}
	if img.parent != nil {
		if e := img.parent.Close(); err == nil {
			err = e
		}
	}
	return err
}

// find returns the index of the extent holding disk offset off.
func (img *Image) find(off int64) int {
	return sort.Search(len(img.extents), func(i int) bool {
		e := img.extents[i]
		return e.start+e.size > off
	})
}

// ReadAt reads the logical disk. Bytes past Size give io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	// Extent boundaries split requests; one "block" is the whole disk.
	return container.ReadRange(p, off, img.size, img.size, func(p []byte, _, off int64) error {
		for len(p) > 0 {
			i := img.find(off)
			e := img.extents[i]
			rel := off - e.start
			n := min(int64(len(p)), e.size-rel)
			if err := img.readExtent(e, p[:n], rel); err != nil {
				return err
			}
			p, off = p[n:], off+n
		}
		return nil
	})
}

func (img *Image) readExtent(e *extent, p []byte, rel int64) error {
	switch {
	case e.flat != nil:
		_, err := e.flat.ReadAt(p, e.flatOffset+rel)
		return err
	case e.sparse != nil:
		return e.sparse.read(p, rel, func(p []byte, rel int64) error { return img.readParent(p, e.start+rel) })
	}
	clear(p)
	return nil
}

// readParent reads what a sparse extent does not hold: the parent's bytes
// (zeros past its end), or zeros without a parent.
func (img *Image) readParent(p []byte, off int64) error {
	if img.parent == nil {
		clear(p)
		return nil
	}
	n := int64(len(p))
	if ps := img.parent.Size(); off+n > ps {
		n = max(0, ps-off)
	}
	clear(p[n:])
	if n == 0 {
		return nil
	}
	_, err := img.parent.ReadAt(p[:n], off)
	return err
}

var _ disk.FileRanger = (*Image)(nil)

// FileRange reports when [off, off+n) reads as one run of one file: a
// range of a flat extent, or uncompressed grains stored one after another
// in a sparse extent (from cached grain tables only, never reading, as
// servers ask on their request loop).
func (img *Image) FileRange(off, n int64) (*os.File, int64, bool) {
	if off < 0 || n <= 0 || off > img.size-n {
		return nil, 0, false
	}
	e := img.extents[img.find(off)]
	rel := off - e.start
	if rel+n > e.size {
		return nil, 0, false
	}
	switch {
	case e.flat != nil:
		return e.flat.OS(), e.flatOffset + rel, true
	case e.sparse != nil:
		return e.sparse.fileRange(rel, n)
	}
	return nil, 0, false
}

// maxExtentGrains bounds the work of one Extents call.
const maxExtentGrains = 1 << 16

// Extents reports unallocated grains (without a parent), zeroed grains
// and ZERO extents as holes, and the rest as data.
func (img *Image) Extents(off, length int64) ([]disk.Extent, error) {
	if err := container.CheckRange(off, length, img.size); err != nil {
		return nil, fmt.Errorf("%s: %w", img.path, err)
	}
	var out container.Extents
	end := off + length
	for pos, n := off, 0; pos < end && n < maxExtentGrains; n++ {
		e := img.extents[img.find(pos)]
		rel := pos - e.start
		var fl disk.ExtentFlags
		next := e.start + e.size
		switch {
		case e.sparse != nil:
			k, kend, err := e.sparse.kind(rel, img.parent != nil)
			if err != nil {
				return nil, err
			}
			fl, next = k, e.start+min(kend, e.size)
		case e.flat == nil:
			fl = container.Unallocated
		}
		out.Add(next-pos, fl)
		pos = next
	}
	return out, nil
}
