package ntfs

// Mapping pair header: the low nibble is the byte width of the run length,
// the high nibble that of the LCN delta (0 for a sparse run).
const (
	mappingPairLenMask   = 0x0f
	mappingPairOffShift  = 4
	mappingPairEnd       = 0x00
	maxMappingFieldBytes = 8
)

// encodeRunlist encodes runs as NTFS mapping pairs, each field in the
// fewest bytes that hold it as a signed little-endian number, followed by
// the terminating zero byte. Runs must be in VCN order and contiguous.
func encodeRunlist(runs []Run) ([]byte, error) {
	var out []byte
	prevLCN := int64(0)
	for i, r := range runs {
		if r.Length <= 0 {
			return nil, formatErr(0, "runlist", ErrBadRunlist, r.Length, "run %d has non-positive length", i)
		}
		if i > 0 && runs[i-1].VCN+runs[i-1].Length != r.VCN {
			return nil, formatErr(0, "runlist", ErrBadRunlist, r.VCN, "run %d starts at VCN %d, not where run %d ends", i, r.VCN, i-1)
		}
		lenBytes := signedWidth(r.Length)
		var delta int64
		offBytes := 0
		if !r.Sparse {
			if r.LCN < 0 {
				return nil, formatErr(0, "runlist", ErrBadRunlist, r.LCN, "run %d has a negative LCN", i)
			}
			delta = r.LCN - prevLCN
			offBytes = signedWidth(delta)
			prevLCN = r.LCN
		}
		out = append(out, byte(lenBytes)|byte(offBytes)<<mappingPairOffShift)
		out = appendSignedLE(out, r.Length, lenBytes)
		out = appendSignedLE(out, delta, offBytes)
	}
	return append(out, mappingPairEnd), nil
}

// signedWidth is the number of bytes (1..8) needed to store v as a
// two's-complement little-endian integer.
func signedWidth(v int64) int {
	n := 1
	for n < maxMappingFieldBytes {
		shift := 64 - 8*uint(n)
		if v<<shift>>shift == v {
			break
		}
		n++
	}
	return n
}

func appendSignedLE(b []byte, v int64, n int) []byte {
	for i := 0; i < n; i++ {
		b = append(b, byte(v>>(8*uint(i))))
	}
	return b
}
