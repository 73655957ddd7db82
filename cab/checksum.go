package cab

// checksum is the CFDATA checksum of MS-CAB: the data XORed together as
// little-endian 32-bit words, with a trailing 1..3 bytes folded in
// big-end-first (the reference algorithm's switch falls through from the
// byte that lands highest). seed chains a second call over the block header.
func checksum(b []byte, seed uint32) uint32 {
	sum := seed
	n := len(b) &^ 3
	for i := 0; i < n; i += 4 {
		sum ^= le32(b[i:])
	}
	var ul uint32
	switch rest := b[n:]; len(rest) {
	case 3:
		ul = uint32(rest[0])<<16 | uint32(rest[1])<<8 | uint32(rest[2])
	case 2:
		ul = uint32(rest[0])<<8 | uint32(rest[1])
	case 1:
		ul = uint32(rest[0])
	}
	return sum ^ ul
}
