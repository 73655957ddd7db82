package ntfs

// Run is one extent of a non-resident attribute: Length clusters starting at
// virtual cluster VCN, stored at logical cluster LCN (or nowhere if Sparse).
type Run struct {
	VCN, LCN, Length int64
	Sparse           bool
	// Offset and Size locate this run's mapping pair inside the MFT record
	// (fixed-up bytes), for planners that rewrite runlists in place.
	Offset, Size int
}

const maxRunsPerList = 1 << 20

// decodeRunlist decodes mapping pairs starting at firstVCN. Each run must
// stay within the volume's clusterCount. off is the absolute offset of b,
// used in errors.
func decodeRunlist(b []byte, firstVCN, clusterCount, off int64) ([]Run, int, error) {
	var runs []Run
	vcn, lcn := firstVCN, int64(0)
	i := 0
	for {
		if i >= len(b) {
			return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, nil, "no terminating zero byte")
		}
		h := b[i]
		if h == 0 {
			return runs, i + 1, nil
		}
		lenSize, offSize := int(h&0x0f), int(h>>4)
		if lenSize == 0 || lenSize > 8 || offSize > 8 {
			return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, h, "bad mapping pair header")
		}
		if i+1+lenSize+offSize > len(b) {
			return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, h, "mapping pair runs past the attribute")
		}
		length := signedLE(b[i+1 : i+1+lenSize])
		if length <= 0 || length > clusterCount {
			return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, length, "run length out of range")
		}
		r := Run{VCN: vcn, Length: length, Offset: i, Size: 1 + lenSize + offSize}
		if offSize == 0 {
			r.Sparse = true
		} else {
			lcn += signedLE(b[i+1+lenSize : i+1+lenSize+offSize])
			if lcn < 0 || lcn+length > clusterCount {
				return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, lcn, "run of %d clusters at LCN %d lies outside the volume (%d clusters)", length, lcn, clusterCount)
			}
			r.LCN = lcn
		}
		if len(runs) >= maxRunsPerList {
			return nil, i, formatErr(off+int64(i), "runlist", ErrBadRunlist, len(runs), "too many runs")
		}
		runs = append(runs, r)
		vcn += length
		i += r.Size
	}
}

// signedLE decodes a little-endian two's-complement integer of 1..8 bytes.
func signedLE(b []byte) int64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	shift := 64 - 8*uint(len(b))
	return int64(v<<shift) >> shift
}
