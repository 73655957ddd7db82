package ntfs

import (
	"sort"
	"unicode/utf16"
)

// MFT record header fields of NTFS 3.1 records (Windows XP and later) past
// the ones the reader uses.
const (
	recNextAttrIDOff   = 40
	recNumberOff       = 44
	recHeaderV31       = 48 // header size when the record number is stored
	attrEndMarkerBytes = 8  // the 0xffffffff end marker, counted as 8 bytes in use as Windows does
	residentIndexedOff = 22
	residentFlagIndex  = 0x01
)

// recEdit is an MFT record taken apart into its header (up to the first
// attribute) and its attribute records, so attributes can grow, shrink or
// be added without patching offsets by hand. bytes() puts it back together.
type recEdit struct {
	num     uint64
	extents []Extent
	size    int
	head    []byte
	attrs   [][]byte
}

// newRecEdit splits the fixed-up record raw (already validated by
// parseRecord).
func newRecEdit(rec *Record) (*recEdit, error) {
	raw := rec.Raw
	off := rec.DiskOffset()
	first := int(le16(raw[recFirstAttrOff:]))
	e := &recEdit{num: rec.Number, extents: rec.Extents, size: len(raw), head: append([]byte(nil), raw[:first]...)}
	for pos := first; ; {
		if pos+4 > rec.BytesInUse {
			return nil, formatErr(off+int64(pos), "MFT record", ErrBadRecord, pos, "record %d: attributes end without an end marker", rec.Number)
		}
		if AttrType(le32(raw[pos:])) == attrEnd {
			break
		}
		l := int(le32(raw[pos+attrLengthOff:]))
		if l < attrResidentHeaderSize || pos+l > rec.BytesInUse {
			return nil, formatErr(off+int64(pos), "MFT record", ErrBadRecord, l, "record %d: attribute length out of range", rec.Number)
		}
		e.attrs = append(e.attrs, append([]byte(nil), raw[pos:pos+l]...))
		pos += l
	}
	return e, nil
}

// used is the number of bytes the record would have in use.
func (e *recEdit) used() int {
	n := len(e.head) + attrEndMarkerBytes
	for _, a := range e.attrs {
		n += len(a)
	}
	return n
}

// allocated is the record's bytes-allocated field, bounded by its size.
func (e *recEdit) allocated() int {
	return min(int(le32(e.head[recBytesAllocatedOff:])), e.size)
}

// bytes assembles the fixed-up record, failing when the attributes no
// longer fit (Windows would move some to an extension record through an
// $ATTRIBUTE_LIST, which this planner does not create).
func (e *recEdit) bytes() ([]byte, error) {
	if u := e.used(); u > e.allocated() {
		return nil, formatErr(e.extents[0].Offset, "MFT record", ErrRecordFull, u,
			"record %d would need %d bytes, it has %d; an $ATTRIBUTE_LIST would be needed", e.num, u, e.allocated())
	}
	out := make([]byte, e.size)
	copy(out, e.head)
	pos := len(e.head)
	for _, a := range e.attrs {
		pos += copy(out[pos:], a)
	}
	put32(out[pos:], uint32(attrEnd))
	put32(out[recBytesInUseOff:], uint32(pos+attrEndMarkerBytes))
	return out, nil
}

// find returns the index of the attribute of type t and name, or -1.
func (e *recEdit) find(t AttrType, name string) int {
	for i, a := range e.attrs {
		if AttrType(le32(a)) == t && attrRawName(a) == name {
			return i
		}
	}
	return -1
}

// insert adds attribute a in the order NTFS keeps: by type, then name.
func (e *recEdit) insert(a []byte) {
	t, name := AttrType(le32(a)), attrRawName(a)
	i := sort.Search(len(e.attrs), func(i int) bool {
		ti := AttrType(le32(e.attrs[i]))
		return ti > t || (ti == t && attrRawName(e.attrs[i]) > name)
	})
	e.attrs = append(e.attrs, nil)
	copy(e.attrs[i+1:], e.attrs[i:])
	e.attrs[i] = a
}

// nextAttrID hands out the next attribute instance number of the record.
func (e *recEdit) nextAttrID() uint16 {
	id := le16(e.head[recNextAttrIDOff:])
	put16(e.head[recNextAttrIDOff:], id+1)
	return id
}

func attrRawName(a []byte) string {
	nl := int(a[attrNameLengthOff])
	if nl == 0 {
		return ""
	}
	no := int(le16(a[attrNameOffsetOff:]))
	if no+2*nl > len(a) {
		return ""
	}
	return utf16String(a[no : no+2*nl])
}

func align8(n int) int { return (n + 7) &^ 7 }

func encodeUTF16(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		put16(b[2*i:], c)
	}
	return b
}

// residentAttr builds a resident attribute record, the name right after
// the header and the value 8-byte aligned after it, as Windows lays them
// out.
func residentAttr(t AttrType, name string, id uint16, indexed bool, value []byte) []byte {
	n16 := encodeUTF16(name)
	valOff := align8(attrResidentHeaderSize + len(n16))
	a := make([]byte, align8(valOff+len(value)))
	put32(a[attrTypeOff:], uint32(t))
	put32(a[attrLengthOff:], uint32(len(a)))
	a[attrNameLengthOff] = byte(len(n16) / 2)
	put16(a[attrNameOffsetOff:], attrResidentHeaderSize)
	put16(a[attrIDOff:], id)
	put32(a[attrValueLengthOff:], uint32(len(value)))
	put16(a[attrValueOffsetOff:], uint16(valOff))
	if indexed {
		a[residentIndexedOff] = residentFlagIndex
	}
	copy(a[attrResidentHeaderSize:], n16)
	copy(a[valOff:], value)
	return a
}

// withResidentValue rebuilds resident attribute a with a new value,
// keeping its type, name, flags, instance and indexed flag.
func withResidentValue(a, value []byte) []byte {
	name := attrRawName(a)
	out := residentAttr(AttrType(le32(a)), name, le16(a[attrIDOff:]), a[residentIndexedOff]&residentFlagIndex != 0, value)
	put16(out[attrFlagsOff:], le16(a[attrFlagsOff:]))
	return out
}

// residentValue returns the value of resident attribute record a.
func residentValue(a []byte) []byte {
	vo, vl := int(le16(a[attrValueOffsetOff:])), int(le32(a[attrValueLengthOff:]))
	if vo+vl > len(a) {
		return nil
	}
	return a[vo : vo+vl]
}

// nonResidentAttr builds an uncompressed non-resident attribute record
// holding runs from VCN 0.
func nonResidentAttr(t AttrType, name string, id uint16, runs []Run, allocSize, dataSize, initSize int64) ([]byte, error) {
	n16 := encodeUTF16(name)
	head := make([]byte, attrNonResHeaderSize+len(n16))
	put32(head[attrTypeOff:], uint32(t))
	head[attrNonResidentOff] = 1
	head[attrNameLengthOff] = byte(len(n16) / 2)
	put16(head[attrNameOffsetOff:], attrNonResHeaderSize)
	put16(head[attrIDOff:], id)
	copy(head[attrNonResHeaderSize:], n16)
	put16(head[attrMappingPairsOff:], uint16(align8(len(head))))
	return withRuns(head, runs, allocSize, dataSize, initSize)
}

// withRuns rebuilds non-resident attribute a (header and name kept) with a
// new runlist and sizes; the attribute must start at VCN 0.
func withRuns(a []byte, runs []Run, allocSize, dataSize, initSize int64) ([]byte, error) {
	mpo := int(le16(a[attrMappingPairsOff:]))
	enc, err := encodeRunlist(runs)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		enc = []byte{mappingPairEnd}
	}
	out := make([]byte, align8(mpo+len(enc)))
	copy(out, a[:min(mpo, len(a))])
	put32(out[attrLengthOff:], uint32(len(out)))
	highest := int64(-1)
	if n := len(runs); n > 0 {
		highest = runs[n-1].VCN + runs[n-1].Length - 1
	}
	put64(out[attrLowestVCNOff:], 0)
	put64(out[attrHighestVCNOff:], uint64(highest))
	put64(out[attrAllocatedSizeOff:], uint64(allocSize))
	put64(out[attrDataSizeOff:], uint64(dataSize))
	put64(out[attrInitSizeOff:], uint64(initSize))
	copy(out[mpo:], enc)
	return out, nil
}
