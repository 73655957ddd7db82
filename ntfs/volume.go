package ntfs

import (
	"fmt"
	"io"
)

// Well-known MFT record numbers.
const (
	RecordMFT     = 0
	RecordMFTMirr = 1
	RecordLogFile = 2
	RecordVolume  = 3
	RecordRoot    = 5
	RecordBitmap  = 6
	RecordUpCase  = 10
)

// Volume is an open NTFS volume.
type Volume struct {
	r    io.ReaderAt
	size int64
	boot *BootSector

	// ClusterSize, RecordSize (MFT record) and IndexRecordSize are in bytes.
	ClusterSize     int64
	RecordSize      int64
	IndexRecordSize int64
	// SectorSize is the boot sector's bytes per sector.
	SectorSize int64

	clusters int64
	mft      *Stream
	upcase   []uint16
}

// Open validates the boot sector of the volume in r (size bytes, typically
// an io.SectionReader over a partition) and loads $MFT's runlist and
// $UpCase.
func Open(r io.ReaderAt, size int64) (*Volume, error) {
	v, err := openMFT(r, size)
	if err != nil {
		return nil, err
	}
	if err := v.loadUpCase(); err != nil {
		return nil, err
	}
	return v, nil
}

// openMFT validates the boot sector and loads $MFT's runlist: every record
// is then readable, but names cannot be compared yet ($UpCase).
func openMFT(r io.ReaderAt, size int64) (*Volume, error) {
	v := &Volume{r: r, size: size}
	b := make([]byte, bootSectorSize)
	if err := v.readAt(b, 0, "boot sector"); err != nil {
		return nil, err
	}
	bs, err := parseBoot(b, size)
	if err != nil {
		return nil, err
	}
	v.boot = bs
	v.ClusterSize, v.RecordSize, v.IndexRecordSize, v.SectorSize = bs.ClusterSize, bs.MFTRecordSize, bs.IndexRecordSize, bs.BytesPerSector
	v.clusters = bs.TotalSectors * bs.BytesPerSector / bs.ClusterSize
	if err := v.loadMFT(); err != nil {
		return nil, err
	}
	return v, nil
}

// Boot returns the decoded boot sector.
func (v *Volume) Boot() BootSector { return *v.boot }

// Size is the volume's length in bytes as given to Open.
func (v *Volume) Size() int64 { return v.size }

// Clusters is the number of clusters the boot sector declares.
func (v *Volume) Clusters() int64 { return v.clusters }

// MFT returns the $MFT's $DATA stream (its runs locate every record).
func (v *Volume) MFT() *Stream { return v.mft }

// readAt reads exactly len(p) bytes at volume offset off.
func (v *Volume) readAt(p []byte, off int64, structure string) error {
	if off < 0 || off+int64(len(p)) > v.size {
		return formatErr(off, structure, ErrTruncated, len(p), "%d bytes at this offset run past the %d-byte volume", len(p), v.size)
	}
	n, err := v.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("ntfs: reading %s at byte 0x%x: %w", structure, off, err)
}

// loadMFT reads record 0 directly from the boot sector's $MFT cluster, then
// builds the MFT stream from its $DATA (which may be fragmented and, for a
// very fragmented MFT, continued in extension records).
func (v *Volume) loadMFT() error {
	off := v.boot.MFTCluster * v.ClusterSize
	raw := make([]byte, v.RecordSize)
	if err := v.readAt(raw, off, "$MFT record 0"); err != nil {
		return err
	}
	rec, err := v.parseRecord(raw, RecordMFT, []Extent{{off, v.RecordSize}})
	if err != nil {
		return err
	}
	frags := unnamedData(rec)
	if len(frags) == 0 || !frags[0].NonResident {
		return formatErr(off, "$MFT record 0", ErrBadRecord, nil, "no non-resident unnamed $DATA attribute")
	}
	var list *Attr
	for _, a := range rec.Attrs {
		if a.Type == AttrAttributeList {
			list = a
			break
		}
	}
	if list != nil {
		if frags, err = v.loadMFTExtensions(list, frags); err != nil {
			return err
		}
	}
	if v.mft, err = v.newStream(frags); err != nil {
		return err
	}
	if v.mft.dataSize < RecordUpCase*v.RecordSize {
		return formatErr(off, "$MFT record 0", ErrBadRecord, v.mft.dataSize, "$MFT too small for the system files")
	}
	return nil
}

// loadMFTExtensions follows $MFT's attribute list: the runs of record 0's
// own $DATA fragment map the first part of the MFT, through which the
// extension records holding the later fragments are read, one at a time,
// each widening the mapped part (Windows puts these records low in the
// MFT, but nothing requires a record to come before the runs it holds).
// It returns every $DATA fragment of $MFT.
func (v *Volume) loadMFTExtensions(list *Attr, frags []*Attr) ([]*Attr, error) {
	var err error
	if v.mft, err = v.buildStream(frags, true); err != nil {
		return nil, err
	}
	entries, err := v.readAttrList(list)
	if err != nil {
		return nil, err
	}
	pending := map[uint64]bool{}
	for _, e := range entries {
		if e.Record != RecordMFT && e.Type == AttrData && e.Name == "" {
			pending[e.Record] = true
		}
	}
	if len(pending) > maxExtensionRecords {
		return nil, formatErr(v.attrDiskOffset(list), "$MFT $ATTRIBUTE_LIST", ErrBadRecord, len(pending), "too many extension records")
	}
	for len(pending) > 0 {
		progress := false
		for _, e := range entries {
			if !pending[e.Record] || int64(e.Record+1)*v.RecordSize > v.mappedMFTBytes() {
				continue
			}
			delete(pending, e.Record)
			ext, err := v.ReadRecord(e.Record)
			if err != nil {
				return nil, err
			}
			if ext.BaseRecord != RecordMFT || !ext.InUse() {
				return nil, formatErr(ext.DiskOffset()+recBaseRecordOff, "MFT record", ErrBadRecord, ext.BaseRecord,
					"record %d, listed in $MFT's attribute list, is not an in-use extension of record 0", e.Record)
			}
			frags = append(frags, unnamedData(ext)...)
			if v.mft, err = v.buildStream(frags, true); err != nil {
				return nil, err
			}
			progress = true
		}
		if !progress {
			var missing uint64
			for n := range pending {
				missing = n
				break
			}
			return nil, formatErr(v.attrDiskOffset(list), "$MFT $ATTRIBUTE_LIST", ErrBadRunlist, missing,
				"extension record %d of $MFT lies past the %d bytes its loaded runs map", missing, v.mappedMFTBytes())
		}
	}
	return frags, nil
}

// mappedMFTBytes is how much of the MFT the runs loaded so far map.
func (v *Volume) mappedMFTBytes() int64 {
	n := len(v.mft.Runs)
	if n == 0 {
		return 0
	}
	return min(v.mft.dataSize, (v.mft.Runs[n-1].VCN+v.mft.Runs[n-1].Length)*v.ClusterSize)
}

// unnamedData returns the record's unnamed $DATA attributes.
func unnamedData(r *Record) []*Attr {
	var out []*Attr
	for _, a := range r.Attrs {
		if a.Type == AttrData && a.Name == "" {
			out = append(out, a)
		}
	}
	return out
}
