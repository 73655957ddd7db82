package overlay

import "math/bits"

// blockMap maps virtual block numbers to map values (valueZero or a slot).
// Pages of pageEntries values are allocated only where a block was
// changed, so memory follows what was written, not the source's size:
// 4 bytes per block in a touched page.
type blockMap struct {
	pages [][]uint32
	count int // entries that are not valueUnmapped
	data  int // entries that name a slot
}

const (
	pageShift   = 12
	pageEntries = 1 << pageShift
	pageMask    = pageEntries - 1
)

func newBlockMap(nblocks int64) *blockMap {
	return &blockMap{pages: make([][]uint32, (nblocks+pageEntries-1)/pageEntries)}
}

func (m *blockMap) get(v int64) uint32 {
	pg := m.pages[v>>pageShift]
	if pg == nil {
		return valueUnmapped
	}
	return pg[v&pageMask]
}

// allUnmapped reports whether no block in [first, last] is in the map.
func (m *blockMap) allUnmapped(first, last int64) bool {
	if m.count == 0 {
		return true
	}
	for v := first; v <= last; {
		pg := m.pages[v>>pageShift]
		if pg == nil {
			v = (v>>pageShift + 1) << pageShift
			continue
		}
		if pg[v&pageMask] != valueUnmapped {
			return false
		}
		v++
	}
	return true
}

func (m *blockMap) set(v int64, val uint32) {
	pg := m.pages[v>>pageShift]
	if pg == nil {
		if val == valueUnmapped {
			return
		}
		pg = make([]uint32, pageEntries)
		m.pages[v>>pageShift] = pg
	}
	old := pg[v&pageMask]
	switch {
	case old == valueUnmapped && val != valueUnmapped:
		m.count++
	case old != valueUnmapped && val == valueUnmapped:
		m.count--
	}
	if old >= valueSlotBase {
		m.data--
	}
	if val >= valueSlotBase {
		m.data++
	}
	pg[v&pageMask] = val
}

// entries lists the map in block order.
func (m *blockMap) entries() []mapEntry {
	out := make([]mapEntry, 0, m.count)
	m.each(func(e mapEntry) { out = append(out, e) })
	return out
}

// each calls fn for every entry in block order.
func (m *blockMap) each(fn func(mapEntry)) {
	for pi, pg := range m.pages {
		if pg == nil {
			continue
		}
		for i, val := range pg {
			if val != valueUnmapped {
				fn(mapEntry{VBlock: uint32(pi<<pageShift + i), Value: val})
			}
		}
	}
}

// bitmap is a growable set of slot numbers.
type bitmap struct{ w []uint64 }

func newBitmap(n int64) *bitmap { return &bitmap{w: make([]uint64, (n+63)/64)} }

func (b *bitmap) get(i int64) bool {
	wi := i >> 6
	return wi < int64(len(b.w)) && b.w[wi]&(1<<(i&63)) != 0
}

func (b *bitmap) set(i int64) {
	wi := i >> 6
	for wi >= int64(len(b.w)) {
		b.w = append(b.w, 0)
	}
	b.w[wi] |= 1 << (i & 63)
}

func (b *bitmap) clear(i int64) {
	if wi := i >> 6; wi < int64(len(b.w)) {
		b.w[wi] &^= 1 << (i & 63)
	}
}

func (b *bitmap) word(wi int) uint64 {
	if b == nil || wi >= len(b.w) {
		return 0
	}
	return b.w[wi]
}

// slotAllocator hands out file slots that no live map references: a slot is
// busy while the in-memory map uses it, while the last durable commit
// references it, or while a commit in progress does.
type slotAllocator struct {
	used       *bitmap // referenced by the in-memory map
	pinned     *bitmap // referenced by the last durable commit (data and map record)
	committing *bitmap // referenced by the commit in progress, nil if none
	hint       int64   // no free slot below this one
	high       int64   // slots at or above this one have never been handed out
}

func newSlotAllocator() *slotAllocator {
	return &slotAllocator{used: newBitmap(0), pinned: newBitmap(0)}
}

func (a *slotAllocator) busyWord(wi int) uint64 {
	return a.used.word(wi) | a.pinned.word(wi) | a.committing.word(wi)
}

func (a *slotAllocator) busy(s int64) bool {
	return a.used.get(s) || a.pinned.get(s) || (a.committing != nil && a.committing.get(s))
}

// isPinned reports whether a durable or committing map references slot s, so
// that it must not be written in place.
func (a *slotAllocator) isPinned(s int64) bool {
	return a.pinned.get(s) || (a.committing != nil && a.committing.get(s))
}

// alloc returns a free slot and marks it used.
func (a *slotAllocator) alloc() int64 {
	for wi := int(a.hint >> 6); int64(wi)<<6 < a.high; wi++ {
		if w := a.busyWord(wi); w != ^uint64(0) {
			s := int64(wi)<<6 + int64(bits.TrailingZeros64(^w))
			if s >= a.high {
				break
			}
			a.used.set(s)
			a.hint = s + 1
			return s
		}
	}
	s := a.high
	a.high++
	a.hint = a.high
	a.used.set(s)
	return s
}

// release marks slot s no longer used by the in-memory map.
func (a *slotAllocator) release(s int64) {
	a.used.clear(s)
	if !a.busy(s) && s < a.hint {
		a.hint = s
	}
}

// allocRun finds n consecutive free slots (first fit) without marking them.
func (a *slotAllocator) allocRun(n int64) int64 {
	run := int64(0)
	for s := int64(0); s < a.high; s++ {
		if s&63 == 0 && a.busyWord(int(s>>6)) == ^uint64(0) {
			run = 0
			s += 63 // a full word: skip it
			continue
		}
		if a.busy(s) {
			run = 0
			continue
		}
		run++
		if run == n {
			return s - n + 1
		}
	}
	start := a.high - run
	a.high = start + n
	return start
}

// commitDone makes the finished commit's slots the durable set.
func (a *slotAllocator) commitDone() {
	a.pinned = a.committing
	a.committing = nil
	a.hint = 0
}

// commitFailed keeps every slot of the failed commit busy until the next
// successful one, since part of it may have reached the disk.
func (a *slotAllocator) commitFailed() {
	for i, w := range a.committing.w {
		if w != 0 {
			for len(a.pinned.w) <= i {
				a.pinned.w = append(a.pinned.w, 0)
			}
			a.pinned.w[i] |= w
		}
	}
	a.committing = nil
}
