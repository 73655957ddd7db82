package disk

import (
	"fmt"
	"io"
	"sort"
)

// planned is a read-only view of a base disk with planned writes laid over
// it, so one planner can read what another has planned before anything is
// applied.
type planned struct {
	base   Reader
	writes []plannedWrite // sorted by offset
	// maxLen bounds how far before a read a write can start and still
	// reach into it.
	maxLen int64
}

type plannedWrite struct {
	Write
	seq int // position in the caller's list: a later write wins an overlap
}

// WithWrites returns base as it reads after ws are applied in order (a
// later write wins where two overlap), without writing anything. Writes
// must lie within base; ws's Data is not copied and must not change.
func WithWrites(base Reader, ws []Write) (Reader, error) {
	p := &planned{base: base, writes: make([]plannedWrite, 0, len(ws))}
	for i, w := range ws {
		if w.Offset < 0 || w.Offset+int64(len(w.Data)) > base.Size() {
			return nil, fmt.Errorf("disk: planned %s write of %d bytes at offset %d lies outside the %d-byte disk: %w",
				w.What, len(w.Data), w.Offset, base.Size(), ErrOutOfRange)
		}
		if len(w.Data) == 0 {
			continue
		}
		p.writes = append(p.writes, plannedWrite{Write: w, seq: i})
		p.maxLen = max(p.maxLen, int64(len(w.Data)))
	}
	sort.SliceStable(p.writes, func(i, j int) bool { return p.writes[i].Offset < p.writes[j].Offset })
	return p, nil
}

// Size is the base disk's size.
func (p *planned) Size() int64 { return p.base.Size() }

// ReadAt reads the base and overlays every planned write that overlaps
// the range, in the caller's order.
func (p *planned) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("disk: read at negative offset %d: %w", off, ErrOutOfRange)
	}
	if off >= p.Size() {
		return 0, io.EOF
	}
	var eof error
	if rest := p.Size() - off; int64(len(b)) > rest {
		b, eof = b[:rest], io.EOF
	}
	n, err := p.base.ReadAt(b, off)
	if err != nil && !(err == io.EOF && n == len(b)) {
		return n, err
	}
	end := off + int64(len(b))
	// Writes that start before off-maxLen cannot reach off.
	i := sort.Search(len(p.writes), func(i int) bool { return p.writes[i].Offset > off-p.maxLen })
	var hits []plannedWrite
	for ; i < len(p.writes) && p.writes[i].Offset < end; i++ {
		if w := p.writes[i]; w.Offset+int64(len(w.Data)) > off {
			hits = append(hits, w)
		}
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].seq < hits[j].seq })
	for _, w := range hits {
		from := max(w.Offset, off)
		to := min(w.Offset+int64(len(w.Data)), end)
		copy(b[from-off:to-off], w.Data[from-w.Offset:to-w.Offset])
	}
	return len(b), eof
}
