package ntfs

import (
	"io"
	"sort"
)

// maxCompressionUnitBytes bounds the buffer a compressed stream needs;
// Windows uses 16 clusters of at most 4 KiB.
const maxCompressionUnitBytes = 1 << 20

// Stream is one attribute's value (usually a $DATA stream) assembled from
// all its fragments, readable as an io.ReaderAt. Bytes between the
// initialized size and the data size read as zeros, as do sparse runs.
type Stream struct {
	v *Volume
	// Type and Name identify the attribute; Fragments are its attribute
	// records ordered by LowestVCN (one for resident attributes).
	Type      AttrType
	Name      string
	Fragments []*Attr
	// Runs is the merged runlist of all fragments.
	Runs []Run

	resident                      []byte
	dataSize, initSize, allocSize int64
	compressed, encrypted, sparse bool
	compressionUnitClusters       int64
	headerOffset                  int64 // where the first fragment lives, for errors
}

// Size is the stream's data size in bytes.
func (s *Stream) Size() int64 { return s.dataSize }

// InitializedSize is how many bytes of the stream were ever written.
func (s *Stream) InitializedSize() int64 { return s.initSize }

// AllocatedSize is the stream's allocated size in bytes.
func (s *Stream) AllocatedSize() int64 { return s.allocSize }

// Resident reports whether the value is stored inside the MFT record.
func (s *Stream) Resident() bool {
	return s.resident != nil || (len(s.Fragments) > 0 && !s.Fragments[0].NonResident)
}

// Compressed reports whether the stream is NTFS-compressed.
func (s *Stream) Compressed() bool { return s.compressed }

// Encrypted reports whether the stream is EFS-encrypted (and so unreadable).
func (s *Stream) Encrypted() bool { return s.encrypted }

// Sparse reports whether the stream is flagged sparse or has holes; the
// sparse runs that end compressed units do not count.
func (s *Stream) Sparse() bool {
	if s.sparse {
		return true
	}
	if s.compressed {
		return false
	}
	for _, r := range s.Runs {
		if r.Sparse {
			return true
		}
	}
	return false
}

// newStream merges fragments (all of one type and name) into a Stream.
func (v *Volume) newStream(frags []*Attr) (*Stream, error) { return v.buildStream(frags, false) }

// buildStream merges fragments into a Stream. With partial set, the runs
// may stop short of the data size and a gap in the fragments' VCNs ends the
// runs instead of failing: $MFT is read that way while the extension
// records that hold the rest of its runlist are still being loaded.
func (v *Volume) buildStream(frags []*Attr, partial bool) (*Stream, error) {
	sort.SliceStable(frags, func(i, j int) bool { return frags[i].LowestVCN < frags[j].LowestVCN })
	first := frags[0]
	s := &Stream{v: v, Type: first.Type, Name: first.Name, Fragments: frags,
		compressed: first.Compressed(), encrypted: first.Encrypted(), sparse: first.Sparse()}
	s.headerOffset = v.attrDiskOffset(first)
	if !first.NonResident {
		if len(frags) > 1 {
			return nil, formatErr(s.headerOffset, "attribute", ErrBadAttribute, len(frags), "resident %s attribute has %d fragments", first.Type, len(frags))
		}
		s.resident = first.Value
		if s.resident == nil {
			s.resident = []byte{}
		}
		s.dataSize, s.initSize, s.allocSize = int64(len(first.Value)), int64(len(first.Value)), int64(len(first.Value))
		return s, nil
	}
	if first.LowestVCN != 0 {
		return nil, formatErr(s.headerOffset, "attribute", ErrBadAttribute, first.LowestVCN, "%s attribute has no fragment starting at VCN 0", first.Type)
	}
	s.dataSize, s.initSize, s.allocSize = first.DataSize, first.InitializedSize, first.AllocatedSize
	next := int64(0)
	for _, f := range frags {
		if partial && f.NonResident && f.LowestVCN != next {
			break
		}
		if !f.NonResident || f.LowestVCN != next {
			return nil, formatErr(v.attrDiskOffset(f), "attribute", ErrBadAttribute, f.LowestVCN, "%s fragment starts at VCN %d, expected %d", f.Type, f.LowestVCN, next)
		}
		s.Runs = append(s.Runs, f.Runs...)
		if n := len(s.Runs); n > 0 {
			next = s.Runs[n-1].VCN + s.Runs[n-1].Length
		}
	}
	if s.compressed {
		if first.CompressionUnit == 0 {
			// A compressed flag without a unit size (seen on some sparse
			// streams) is read as plain data.
			s.compressed = false
		} else {
			s.compressionUnitClusters = 1 << first.CompressionUnit
			if s.compressionUnitClusters*v.ClusterSize > maxCompressionUnitBytes {
				return nil, formatErr(s.headerOffset, "attribute", ErrUnsupported, first.CompressionUnit,
					"compression unit of %d clusters of %d bytes is larger than NTFS writes", s.compressionUnitClusters, v.ClusterSize)
			}
		}
	}
	if next*v.ClusterSize < s.dataSize && !s.compressed && !partial {
		return nil, formatErr(s.headerOffset, "runlist", ErrBadRunlist, next, "runs cover %d clusters but data size is %d bytes", next, s.dataSize)
	}
	return s, nil
}

// attrDiskOffset gives the absolute offset of an attribute record, for
// error messages; -1 when unknown.
func (v *Volume) attrDiskOffset(a *Attr) int64 {
	if v.mft == nil {
		return int64(a.RecordOffset)
	}
	base := int64(a.Record) * v.RecordSize
	ex, err := v.mft.diskExtents(base+int64(a.RecordOffset), 1)
	if err != nil || len(ex) == 0 {
		return -1
	}
	return ex[0].Offset
}

// findRun returns the index of the run holding vcn, or -1.
func (s *Stream) findRun(vcn int64) int {
	i := sort.Search(len(s.Runs), func(i int) bool { return s.Runs[i].VCN+s.Runs[i].Length > vcn })
	if i < len(s.Runs) && s.Runs[i].VCN <= vcn {
		return i
	}
	return -1
}

// diskExtents maps the byte range [off, off+n) of the stream to volume
// extents; sparse parts get Offset -1.
func (s *Stream) diskExtents(off, n int64) ([]Extent, error) {
	if s.resident != nil {
		return nil, formatErr(s.headerOffset, "attribute", ErrUnsupported, nil, "resident stream has no disk extents")
	}
	var out []Extent
	cs := s.v.ClusterSize
	for n > 0 {
		vcn := off / cs
		i := s.findRun(vcn)
		if i < 0 {
			return nil, formatErr(s.headerOffset, "runlist", ErrBadRunlist, vcn, "no run maps VCN %d of %s", vcn, s.Type)
		}
		r := s.Runs[i]
		inRun := off - r.VCN*cs
		k := min(n, r.Length*cs-inRun)
		e := Extent{Offset: -1, Length: k}
		if !r.Sparse {
			e.Offset = r.LCN*cs + inRun
		}
		if l := len(out); l > 0 && e.Offset >= 0 && out[l-1].Offset >= 0 && out[l-1].Offset+out[l-1].Length == e.Offset {
			out[l-1].Length += k
		} else {
			out = append(out, e)
		}
		off += k
		n -= k
	}
	return out, nil
}

// ReadAt reads the stream's data.
func (s *Stream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, formatErr(s.headerOffset, "stream", ErrUnsupported, off, "negative offset")
	}
	if off >= s.dataSize {
		return 0, io.EOF
	}
	want := len(p)
	var eof error
	if int64(want) > s.dataSize-off {
		p = p[:s.dataSize-off]
		eof = io.EOF
	}
	if s.resident != nil {
		return copy(p, s.resident[off:]), eof
	}
	if s.encrypted {
		return 0, formatErr(s.headerOffset, "stream", ErrUnsupported, nil, "%s stream is EFS-encrypted", s.Type)
	}
	var err error
	if s.compressed {
		err = s.readCompressed(p, off)
	} else {
		err = s.readPlain(p, off)
	}
	if err != nil {
		return 0, err
	}
	return len(p), eof
}

func (s *Stream) readPlain(p []byte, off int64) error {
	// Bytes past the initialized size are zeros whatever the disk holds.
	n := int64(len(p))
	if off+n > s.initSize {
		z := max(0, s.initSize-off)
		clear(p[z:])
		n = z
	}
	if n == 0 {
		return nil
	}
	extents, err := s.diskExtents(off, n)
	if err != nil {
		return err
	}
	pos := int64(0)
	for _, e := range extents {
		if e.Offset < 0 {
			clear(p[pos : pos+e.Length])
		} else if err := s.v.readAt(p[pos:pos+e.Length], e.Offset, s.Type.String()+" data"); err != nil {
			return err
		}
		pos += e.Length
	}
	return nil
}
