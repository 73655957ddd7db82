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
	if err := v.loadUpCase(); err != nil {
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
	var frags []*Attr
	for _, a := range rec.Attrs {
		if a.Type == AttrData && a.Name == "" {
			frags = append(frags, a)
		}
	}
	if len(frags) == 0 || !frags[0].NonResident {
		return formatErr(off, "$MFT record 0", ErrBadRecord, nil, "no non-resident unnamed $DATA attribute")
	}
	if v.mft, err = v.newStream(frags); err != nil {
		return err
	}
	if v.mft.dataSize < RecordUpCase*v.RecordSize {
		return formatErr(off, "$MFT record 0", ErrBadRecord, v.mft.dataSize, "$MFT too small for the system files")
	}
	if !hasAttr(rec, AttrAttributeList) {
		return nil
	}
	// Extension records are read through the partial stream built above.
	f, err := v.fileFromRecord(rec)
	if err != nil {
		return err
	}
	s, err := f.stream(AttrData, "")
	if err != nil {
		return err
	}
	v.mft = s
	return nil
}

func hasAttr(r *Record, t AttrType) bool {
	for _, a := range r.Attrs {
		if a.Type == t {
			return true
		}
	}
	return false
}
