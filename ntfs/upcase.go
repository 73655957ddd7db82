package ntfs

const upcaseEntries = 1 << 16

// loadUpCase reads $UpCase, the volume's table for case-insensitive name
// comparison (it can differ between Windows versions, so the volume's own
// copy is authoritative).
func (v *Volume) loadUpCase() error {
	f, err := v.OpenRecord(RecordUpCase)
	if err != nil {
		return err
	}
	s, err := f.stream(AttrData, "")
	if err != nil {
		return err
	}
	if s.Size() != 2*upcaseEntries {
		return formatErr(s.headerOffset, "$UpCase", ErrBadRecord, s.Size(), "$UpCase is not 128 KiB")
	}
	b := make([]byte, 2*upcaseEntries)
	if _, err := s.ReadAt(b, 0); err != nil {
		return err
	}
	v.upcase = make([]uint16, upcaseEntries)
	for i := range v.upcase {
		v.upcase[i] = le16(b[2*i:])
	}
	return nil
}

// compareNames orders two UTF-16 names as NTFS file name collation does:
// code unit by code unit after upcasing, shorter first on a tie.
func (v *Volume) compareNames(a, b []uint16) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := v.upcase[a[i]], v.upcase[b[i]]
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
