package registry

// cellSet records which cells a traversal has used, so that a cell reached a
// second time (a loop or a shared list) is reported instead of re-read.
type cellSet struct {
	bits []uint64 // one bit per 8-byte cell slot; nil for a small map-based set
	m    map[uint32]struct{}
}

func newCellSet(hbinsLen int) *cellSet {
	return &cellSet{bits: make([]uint64, (hbinsLen/cellAlignment+63)/64)}
}

// claim marks off as used and reports whether it was unused before.
func (s *cellSet) claim(off uint32) bool {
	if s.bits != nil {
		i := off / cellAlignment
		w, b := i/64, uint64(1)<<(i%64)
		if int(w) >= len(s.bits) {
			return true // out of range offsets are rejected by the cell reader
		}
		if s.bits[w]&b != 0 {
			return false
		}
		s.bits[w] |= b
		return true
	}
	if s.m == nil {
		s.m = make(map[uint32]struct{})
	}
	if _, ok := s.m[off]; ok {
		return false
	}
	s.m[off] = struct{}{}
	return true
}
