package ntfs

// Multi-sector header shared by FILE, INDX and RSTR records.
const (
	usaOffsetOff   = 4
	usaCountOff    = 6
	multiSectorMin = 256
)

// applyFixups verifies and undoes the update-sequence protection of a
// multi-sector record in place. The sector stride comes from the update
// sequence array's length, not from a fixed 512. off is the record's
// absolute offset, used in errors.
func applyFixups(b []byte, off int64, structure string) error {
	if len(b) < usaCountOff+2 {
		return formatErr(off, structure, ErrBadFixup, len(b), "record too short for a multi-sector header")
	}
	usaOff := int(le16(b[usaOffsetOff:]))
	usaCount := int(le16(b[usaCountOff:]))
	if usaCount < 2 {
		return formatErr(off+usaCountOff, structure, ErrBadFixup, usaCount, "update sequence array too short")
	}
	if usaOff%2 != 0 || usaOff+2*usaCount > len(b) {
		return formatErr(off+usaOffsetOff, structure, ErrBadFixup, usaOff, "update sequence array outside the record")
	}
	sectors := usaCount - 1
	stride := len(b) / sectors
	if stride*sectors != len(b) || stride < multiSectorMin || stride&(stride-1) != 0 {
		return formatErr(off+usaCountOff, structure, ErrBadFixup, usaCount, "update sequence count does not divide the %d-byte record", len(b))
	}
	usn := le16(b[usaOff:])
	for i := 1; i <= sectors; i++ {
		end := i*stride - 2
		if got := le16(b[end:]); got != usn {
			return formatErr(off+int64(end), structure, ErrBadFixup, got, "sector %d ends with 0x%04x, update sequence number is 0x%04x", i-1, got, usn)
		}
		copy(b[end:end+2], b[usaOff+2*i:usaOff+2*i+2])
	}
	return nil
}
