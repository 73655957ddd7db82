package ntfs

import (
	"strings"
)

// $ATTRIBUTE_LIST entry layout.
const (
	alTypeOff       = 0
	alRecordLenOff  = 4
	alNameLenOff    = 6
	alNameOffOff    = 7
	alLowestVCNOff  = 8
	alBaseRefOff    = 16
	alAttrIDOff     = 24
	alEntryMin      = 26
	maxAttrListSize = 1 << 20
)

// AttrListEntry is one entry of a file's $ATTRIBUTE_LIST.
type AttrListEntry struct {
	Type      AttrType
	Name      string
	LowestVCN int64
	Record    uint64
	ID        uint16
}

// File is an MFT base record together with the attributes of its
// extension records.
type File struct {
	v          *Volume
	Record     *Record
	Extensions []*Record
	// Attrs holds every attribute of the file, base record first.
	Attrs    []*Attr
	AttrList []AttrListEntry
}

// Number is the file's MFT record number.
func (f *File) Number() uint64 { return f.Record.Number }

// IsDirectory reports whether the file is a directory.
func (f *File) IsDirectory() bool { return f.Record.IsDirectory() }

// OpenRecord opens the file whose base record is n.
func (v *Volume) OpenRecord(n uint64) (*File, error) {
	rec, err := v.ReadRecord(n)
	if err != nil {
		return nil, err
	}
	if !rec.InUse() {
		return nil, formatErr(rec.DiskOffset(), "MFT record", ErrNotFound, n, "record %d is not in use", n)
	}
	if rec.BaseRecord != 0 {
		return nil, formatErr(rec.DiskOffset()+recBaseRecordOff, "MFT record", ErrBadRecord, rec.BaseRecord, "record %d is an extension of record %d", n, rec.BaseRecord)
	}
	return v.fileFromRecord(rec)
}

// fileFromRecord gathers the attributes of rec and, through its
// $ATTRIBUTE_LIST, those stored in extension records.
func (v *Volume) fileFromRecord(rec *Record) (*File, error) {
	f := &File{v: v, Record: rec, Attrs: append([]*Attr(nil), rec.Attrs...)}
	var list *Attr
	for _, a := range rec.Attrs {
		if a.Type == AttrAttributeList {
			list = a
			break
		}
	}
	if list == nil {
		return f, nil
	}
	entries, err := v.readAttrList(list)
	if err != nil {
		return nil, err
	}
	f.AttrList = entries
	seen := map[uint64]bool{rec.Number: true}
	for _, e := range entries {
		if seen[e.Record] {
			continue
		}
		if len(seen) > maxExtensionRecords {
			return nil, formatErr(v.attrDiskOffset(list), "$ATTRIBUTE_LIST", ErrBadRecord, len(seen), "too many extension records")
		}
		seen[e.Record] = true
		ext, err := v.ReadRecord(e.Record)
		if err != nil {
			return nil, err
		}
		if ext.BaseRecord != rec.Number {
			return nil, formatErr(ext.DiskOffset()+recBaseRecordOff, "MFT record", ErrBadRecord, ext.BaseRecord,
				"record %d listed in the attribute list of record %d belongs to record %d", e.Record, rec.Number, ext.BaseRecord)
		}
		f.Extensions = append(f.Extensions, ext)
		f.Attrs = append(f.Attrs, ext.Attrs...)
	}
	return f, nil
}

func (v *Volume) readAttrList(a *Attr) ([]AttrListEntry, error) {
	var b []byte
	if !a.NonResident {
		b = a.Value
	} else {
		if a.DataSize > maxAttrListSize {
			return nil, formatErr(v.attrDiskOffset(a), "$ATTRIBUTE_LIST", ErrBadAttribute, a.DataSize, "attribute list too large")
		}
		s, err := v.newStream([]*Attr{a})
		if err != nil {
			return nil, err
		}
		b = make([]byte, a.DataSize)
		if _, err := s.ReadAt(b, 0); err != nil && len(b) > 0 {
			return nil, err
		}
	}
	off := v.attrDiskOffset(a)
	var out []AttrListEntry
	for pos := 0; pos+alEntryMin <= len(b); {
		rl := int(le16(b[pos+alRecordLenOff:]))
		if rl < alEntryMin || pos+rl > len(b) {
			return nil, formatErr(off, "$ATTRIBUTE_LIST", ErrBadAttribute, rl, "entry at value offset %d has bad length", pos)
		}
		e := AttrListEntry{
			Type:      AttrType(le32(b[pos+alTypeOff:])),
			LowestVCN: int64(le64(b[pos+alLowestVCNOff:])),
			Record:    le64(b[pos+alBaseRefOff:]) & mftRefRecordMask,
			ID:        le16(b[pos+alAttrIDOff:]),
		}
		if nl := int(b[pos+alNameLenOff]); nl > 0 {
			no := int(b[pos+alNameOffOff])
			if no+2*nl > rl {
				return nil, formatErr(off, "$ATTRIBUTE_LIST", ErrBadAttribute, no, "entry at value offset %d has its name outside it", pos)
			}
			e.Name = utf16String(b[pos+no : pos+no+2*nl])
		}
		out = append(out, e)
		pos += rl
	}
	return out, nil
}

// stream assembles the attribute of type t and name (compared
// case-insensitively) from all its fragments.
func (f *File) stream(t AttrType, name string) (*Stream, error) {
	var frags []*Attr
	for _, a := range f.Attrs {
		if a.Type == t && (a.Name == name || strings.EqualFold(a.Name, name)) {
			frags = append(frags, a)
		}
	}
	if len(frags) == 0 {
		what := t.String()
		if name != "" {
			what += " stream " + name
		}
		return nil, formatErr(f.Record.DiskOffset(), "MFT record", ErrNotFound, f.Record.Number, "record %d has no %s", f.Record.Number, what)
	}
	return f.v.newStream(frags)
}

// Stream returns the file's $DATA stream with the given name ("" for the
// unnamed default stream).
func (f *File) Stream(name string) (*Stream, error) { return f.stream(AttrData, name) }

// Attribute returns the assembled attribute of type t and name.
func (f *File) Attribute(t AttrType, name string) (*Stream, error) { return f.stream(t, name) }

// StreamNames lists the names of the file's named $DATA streams.
func (f *File) StreamNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range f.Attrs {
		if a.Type == AttrData && a.Name != "" && !seen[a.Name] {
			seen[a.Name] = true
			out = append(out, a.Name)
		}
	}
	return out
}

// FileNames returns the file's $FILE_NAME attributes (one per hard link
// and namespace).
func (f *File) FileNames() []FileName {
	var out []FileName
	for _, a := range f.Attrs {
		if a.Type != AttrFileName || a.NonResident {
			continue
		}
		if fn, err := parseFileName(a.Value, 0); err == nil {
			out = append(out, fn)
		}
	}
	return out
}

// HasData reports whether the file has an unnamed $DATA attribute (system
// view indexes such as $Extend\$ObjId have none).
func (f *File) HasData() bool {
	for _, a := range f.Attrs {
		if a.Type == AttrData && a.Name == "" {
			return true
		}
	}
	return false
}
