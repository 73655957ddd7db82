package vmdk

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
	"github.com/kvmify/kvmify/internal/container/inflate"
)

// sparseExtent is a hosted sparse extent (monolithicSparse,
// twoGbMaxExtentSparse, streamOptimized): a grain directory of grain
// tables of grain offsets, all in sectors.
type sparseExtent struct {
	f          *container.File
	h          sparseHeader
	id         int64 // index in the image, for cache keys
	grainBytes int64
	gd         []uint32
	gdOffset   int64 // bytes, for errors
	gtCache    *container.Cache
	grainCache *container.Cache
	// inflaters reuses zlib state and input buffers across grains.
	inflaters sync.Pool
}

// inflater is a reusable zlib decoder with its input buffer.
type inflater struct {
	d    inflate.Decoder
	comp []byte
}

// markerSize is a stream marker's header: lba (8) and size (4).
const markerSize = 12

// openSparse reads a sparse extent's header (from the footer when a
// streamOptimized file keeps its grain directory at the end) and grain
// directory.
func openSparse(f *container.File, id int64, gtCache, grainCache *container.Cache) (*sparseExtent, error) {
	b := make([]byte, headerSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	h := decodeSparseHeader(b)
	if err := h.check(f.Path); err != nil {
		return nil, err
	}
	if h.GdOffset == gdAtEnd {
		// streamOptimized: footer marker, footer (a copy of the header
		// with the real gdOffset) and end-of-stream marker close the file.
		const tail = 3 * headerSize
		if f.Size < tail+headerSize {
			return nil, &FormatError{File: f.Path, Offset: 56, What: "gdOffset is at the end but the file has no footer", Value: f.Size, Err: ErrCorrupt}
		}
		t := make([]byte, tail)
		if _, err := f.ReadAt(t, f.Size-tail); err != nil {
			return nil, err
		}
		le := binary.LittleEndian
		if le.Uint32(t[12:]) != markerFooter || le.Uint32(t[2*headerSize+12:]) != markerEOS {
			return nil, &FormatError{File: f.Path, Offset: f.Size - tail, What: "footer or end-of-stream marker missing (is the file truncated?)", Err: ErrCorrupt}
		}
		h = decodeSparseHeader(t[headerSize:])
		if err := h.check(f.Path); err != nil {
			return nil, err
		}
		if h.GdOffset == gdAtEnd {
			return nil, &FormatError{File: f.Path, Offset: f.Size - 2*headerSize + 56, What: "footer gdOffset", Value: "at end", Err: ErrCorrupt}
		}
	}
	if h.Flags&flagCompressed != 0 && h.Flags&flagMarkers == 0 {
		return nil, &FormatError{File: f.Path, Offset: 8, What: "compressed grains without markers", Value: fmt.Sprintf("flags 0x%x", h.Flags), Err: ErrUnsupported}
	}
	s := &sparseExtent{f: f, h: h, id: id, grainBytes: int64(h.GrainSize) * sectorSize, gtCache: gtCache, grainCache: grainCache}
	perGT := h.GrainSize * uint64(h.NumGTEsPerGT)
	n := (h.Capacity + perGT - 1) / perGT
	s.gdOffset = int64(h.GdOffset) * sectorSize
	if h.GdOffset > uint64(f.Size)/sectorSize || n*4 > uint64(f.Size-s.gdOffset) {
		return nil, &FormatError{File: f.Path, Offset: 56, What: "grain directory not inside the file", Value: fmt.Sprintf("sector %d, %d entries", h.GdOffset, n), Err: ErrCorrupt}
	}
	raw := make([]byte, n*4)
	if _, err := f.ReadAt(raw, s.gdOffset); err != nil {
		return nil, err
	}
	s.gd = make([]uint32, n)
	for i := range s.gd {
		s.gd[i] = binary.LittleEndian.Uint32(raw[i*4:])
	}
	return s, nil
}

// capacity is the extent's size in bytes.
func (s *sparseExtent) capacity() int64 { return int64(s.h.Capacity) * sectorSize }

// grainEntry returns grain g's table entry and where it lies (for errors).
func (s *sparseExtent) grainEntry(g int64) (uint32, int64, error) {
	per := int64(s.h.NumGTEsPerGT)
	gdi := g / per
	gt := s.gd[gdi]
	if gt == 0 {
		return 0, s.gdOffset + gdi*4, nil
	}
	gtOff := int64(gt) * sectorSize
	size := per * 4
	if gtOff > s.f.Size-size {
		return 0, 0, &FormatError{File: s.f.Path, Offset: s.gdOffset + gdi*4, What: "grain directory entry (table past the end of the file)", Value: gt, Err: ErrCorrupt}
	}
	t, err := s.gtCache.Load(s.id<<40|gdi, func() ([]byte, error) {
		t := make([]byte, size)
		_, err := s.f.ReadAt(t, gtOff)
		return t, err
	})
	if err != nil {
		return 0, 0, err
	}
	i := g % per
	return binary.LittleEndian.Uint32(t[i*4:]), gtOff + i*4, nil
}

// read fills p from offset off of the extent; parent reads what the
// extent does not hold (at the extent-relative offset given).
func (s *sparseExtent) read(p []byte, off int64, parent func(p []byte, off int64) error) error {
	runs := container.NewRuns(p)
	_, err := container.ReadRange(p, off, s.capacity(), s.grainBytes, func(q []byte, g, within int64) error {
		e, where, err := s.grainEntry(g)
		if err != nil {
			return err
		}
		plain := e > gteZeroed || e == gteZeroed && s.h.Flags&flagZeroedGTE == 0
		if plain && s.h.Flags&flagCompressed == 0 {
			return runs.Add(s.f, int(g*s.grainBytes+within-off), len(q), int64(e)*sectorSize+within)
		}
		if err := runs.Flush(); err != nil {
			return err
		}
		switch {
		case e == 0:
			return parent(q, g*s.grainBytes+within)
		case !plain:
			clear(q)
			return nil
		}
		data, err := s.grainCache.Load(s.id<<40|g, func() ([]byte, error) { return s.inflate(g, e, where) })
		if err != nil {
			return err
		}
		copy(q, data[within:])
		return nil
	})
	if ferr := runs.Flush(); ferr != nil {
		return ferr
	}
	return err
}

// inflate decompresses grain g, stored behind a grain marker at sector e.
func (s *sparseExtent) inflate(g int64, e uint32, where int64) ([]byte, error) {
	off := int64(e) * sectorSize
	bad := func(what string, v any) error {
		return &FormatError{File: s.f.Path, Offset: off, What: fmt.Sprintf("compressed grain %d (table entry at %d): %s", g, where, what), Value: v, Err: ErrCorrupt}
	}
	var m [markerSize]byte
	if _, err := s.f.ReadAt(m[:], off); err != nil {
		return nil, err
	}
	lba := binary.LittleEndian.Uint64(m[:])
	size := int64(binary.LittleEndian.Uint32(m[8:]))
	if lba != uint64(g)*s.h.GrainSize {
		return nil, bad("marker names another sector", lba)
	}
	if size == 0 || size > 2*s.grainBytes+sectorSize {
		return nil, bad("marker size", size)
	}
	z, _ := s.inflaters.Get().(*inflater)
	if z == nil {
		z = &inflater{}
	}
	defer s.inflaters.Put(z)
	if int64(cap(z.comp)) < size {
		z.comp = make([]byte, size)
	}
	comp := z.comp[:size]
	if _, err := s.f.ReadAt(comp, off+markerSize); err != nil {
		return nil, err
	}
	out := make([]byte, s.grainBytes)
	// The whole stream must end within the grain and match its Adler-32;
	// the last grain may hold only what lies within the capacity.
	n, err := z.d.Zlib(out, comp)
	if err != nil {
		return nil, bad("deflate", err.Error())
	}
	if need := min(s.grainBytes, s.capacity()-g*s.grainBytes); int64(n) < need {
		return nil, bad(fmt.Sprintf("stream ends after %d of %d bytes", n, need), nil)
	}
	return out, nil
}

// fileRange is FileRange within the extent, from cached grain tables.
func (s *sparseExtent) fileRange(off, n int64) (*os.File, int64, bool) {
	if s.h.Flags&flagCompressed != 0 {
		return nil, 0, false
	}
	per := int64(s.h.NumGTEsPerGT)
	start := int64(-1)
	for pos := off; pos < off+n; {
		g := pos / s.grainBytes
		t, ok := s.gtCache.Get(s.id<<40 | g/per)
		if !ok {
			return nil, 0, false
		}
		e := binary.LittleEndian.Uint32(t[(g%per)*4:])
		if e <= gteZeroed {
			return nil, 0, false
		}
		h := int64(e)*sectorSize + pos%s.grainBytes
		if start < 0 {
			start = h
		} else if h != start+(pos-off) {
			return nil, 0, false
		}
		pos = min((g+1)*s.grainBytes, off+n)
	}
	if !s.f.Contiguous(start, n) {
		return nil, 0, false
	}
	return s.f.OS(), start, true
}

// kind tells how grain g (holding extent offset off) is stored.
func (s *sparseExtent) kind(off int64, hasParent bool) (disk.ExtentFlags, int64, error) {
	g := off / s.grainBytes
	end := min((g+1)*s.grainBytes, s.capacity())
	e, _, err := s.grainEntry(g)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case e == 0 && !hasParent:
		return container.Unallocated, end, nil
	case e == 0:
		return 0, end, nil
	case e == gteZeroed && s.h.Flags&flagZeroedGTE != 0:
		return container.Unallocated, end, nil
	}
	return 0, end, nil
}
