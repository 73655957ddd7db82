package registry

// cellSet records which cells one read (a subkey list, a key's values) has
// used, so that a cell named twice there is reported instead of read twice.
type cellSet struct {
	m map[uint32]struct{}
}

// claim marks off as used and reports whether it was unused before.
func (s *cellSet) claim(off uint32) bool {
	if s.m == nil {
		s.m = make(map[uint32]struct{})
	}
	if _, ok := s.m[off]; ok {
		return false
	}
	s.m[off] = struct{}{}
	return true
}
