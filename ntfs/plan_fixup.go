package ntfs

// Update sequence numbers 0 and 0xffff are avoided when incrementing, as
// Windows and ntfs-3g do, so a fresh record is never mistaken for a
// never-written or all-ones sector.
const (
	usnSkipLow  = 0x0000
	usnSkipHigh = 0xffff
	usnFirst    = 0x0001
)

// protectFixups is the inverse of applyFixups: on a fixed-up copy of a
// multi-sector record it bumps the update sequence number, saves each
// sector's last two bytes in the update sequence array and stamps the
// number over them, so the record can be written back whole.
func protectFixups(b []byte, off int64, structure string) error {
	if len(b) < usaCountOff+2 {
		return formatErr(off, structure, ErrBadFixup, len(b), "record too short for a multi-sector header")
	}
	usaOff := int(le16(b[usaOffsetOff:]))
	usaCount := int(le16(b[usaCountOff:]))
	if usaCount < 2 || usaOff%2 != 0 || usaOff+2*usaCount > len(b) {
		return formatErr(off+usaOffsetOff, structure, ErrBadFixup, usaOff, "update sequence array outside the record")
	}
	sectors := usaCount - 1
	stride := len(b) / sectors
	if stride*sectors != len(b) || stride < multiSectorMin || stride&(stride-1) != 0 {
		return formatErr(off+usaCountOff, structure, ErrBadFixup, usaCount, "update sequence count does not divide the %d-byte record", len(b))
	}
	usn := le16(b[usaOff:]) + 1
	if usn == usnSkipLow || usn == usnSkipHigh {
		usn = usnFirst
	}
	put16(b[usaOff:], usn)
	for i := 1; i <= sectors; i++ {
		end := i*stride - 2
		copy(b[usaOff+2*i:usaOff+2*i+2], b[end:end+2])
		put16(b[end:], usn)
	}
	return nil
}

func put16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }

func put64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * uint(i)))
	}
}

func put32(b []byte, v uint32) {
	for i := 0; i < 4; i++ {
		b[i] = byte(v >> (8 * uint(i)))
	}
}
