package overlay

import (
	"fmt"

	"github.com/kvmify/kvmify/disk"
)

// maxExtents bounds the work of one Extents call (map runs scanned and
// extents returned); callers ask again from where the answer stopped.
const maxExtents = 4096

var _ disk.Extenter = (*Overlay)(nil)

// blockState is what the map says about a block, as Extents needs it.
type blockState uint8

const (
	stateUnmapped blockState = iota // read from the base
	stateData                       // held in an overlay slot
	stateZero                       // a zero extent (Trim or Zero)
)

// blockRun is a run of blocks [first, end) with one state.
type blockRun struct {
	first, end int64
	state      blockState
}

// runs lists the map's runs over blocks [first, last], merging neighbours in
// the same state, and stops after limit runs. Absent pages are skipped
// whole, so the cost follows the pages touched, not the disk's size.
func (m *blockMap) runs(first, last int64, limit int) []blockRun {
	var out []blockRun
	add := func(v, end int64, s blockState) bool {
		if k := len(out) - 1; k >= 0 && out[k].state == s && out[k].end == v {
			out[k].end = end
			return true
		}
		if len(out) == limit {
			return false
		}
		out = append(out, blockRun{first: v, end: end, state: s})
		return true
	}
	if m.count == 0 {
		add(first, last+1, stateUnmapped)
		return out
	}
	for v := first; v <= last; {
		pg := m.pages[v>>pageShift]
		if pg == nil {
			next := min((v>>pageShift+1)<<pageShift, last+1)
			if !add(v, next, stateUnmapped) {
				break
			}
			v = next
			continue
		}
		pageEnd := min((v>>pageShift+1)<<pageShift, last+1)
		vals := pg[v&pageMask : (pageEnd-1)&pageMask+1]
		end := v + int64(sameStateLen(vals))
		if !add(v, end, stateOf(vals[0])) {
			break
		}
		v = end
	}
	return out
}

// sameStateLen is how many leading values share the state of vals[0]; it
// is the hot loop of a query over touched pages, so it compares raw values.
func sameStateLen(vals []uint32) int {
	switch first := vals[0]; first {
	case valueUnmapped, valueZero:
		for i, x := range vals {
			if x != first {
				return i
			}
		}
	default:
		for i, x := range vals {
			if x < valueSlotBase {
				return i
			}
		}
	}
	return len(vals)
}

func stateOf(val uint32) blockState {
	switch val {
	case valueUnmapped:
		return stateUnmapped
	case valueZero:
		return stateZero
	default:
		return stateData
	}
}

// Extents reports the overlay's view from off on: blocks the overlay holds
// are data, its zero extents are holes that read as zeros, and unchanged
// blocks are what the base reports if it is a disk.Extenter (data
// otherwise). An answer that is not cut short by the per-call bound ends
// at a block boundary or at Size.
func (o *Overlay) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length <= 0 || off >= o.size || length > o.size-off {
		return nil, fmt.Errorf("overlay: extents of %d bytes at offset %d on a %d-byte disk: %w", length, off, o.size, disk.ErrOutOfRange)
	}
	bs := int64(o.bs)
	o.mu.RLock()
	if o.closed {
		o.mu.RUnlock()
		return nil, ErrClosed
	}
	runs := o.bmap.runs(off/bs, (off+length-1)/bs, maxExtents)
	o.mu.RUnlock()

	var out extentList
	for _, r := range runs {
		lo, hi := max(off, r.first*bs), min(r.end*bs, o.size)
		switch r.state {
		case stateData:
			out.add(hi-lo, 0)
		case stateZero:
			out.add(hi-lo, disk.ExtentHole|disk.ExtentZero)
		default:
			// The base is asked without o.mu held, as ReadAt reads it.
			if err := o.baseExtents(&out, lo, hi); err != nil {
				return nil, err
			}
		}
		if len(out) >= maxExtents {
			break
		}
	}
	return out, nil
}

// baseExtents appends the base's extents for [lo, hi), clipped to it, or one
// data extent when the base cannot tell. It may stop early once out holds
// maxExtents extents.
func (o *Overlay) baseExtents(out *extentList, lo, hi int64) error {
	be, ok := o.base.(disk.Extenter)
	if !ok {
		out.add(hi-lo, 0)
		return nil
	}
	for pos := lo; pos < hi && len(*out) < maxExtents; {
		exts, err := be.Extents(pos, hi-pos)
		if err != nil {
			return fmt.Errorf("overlay: source extents at byte %d: %w", pos, err)
		}
		// A bad answer from the base must not make this loop spin or overrun.
		if err := disk.CheckExtents(exts, pos, hi-pos, o.size); err != nil {
			return fmt.Errorf("overlay: source extents at byte %d: %w", pos, err)
		}
		for _, e := range exts {
			n := min(e.Length, hi-pos)
			out.add(n, e.Flags)
			if pos += n; pos == hi {
				break
			}
		}
	}
	return nil
}

// extentList builds an Extents answer, merging a run into the previous one
// when their flags are equal so that adjacent extents always differ.
type extentList []disk.Extent

func (l *extentList) add(length int64, flags disk.ExtentFlags) {
	if k := len(*l) - 1; k >= 0 && (*l)[k].Flags == flags {
		(*l)[k].Length += length
		return
	}
	*l = append(*l, disk.Extent{Length: length, Flags: flags})
}
