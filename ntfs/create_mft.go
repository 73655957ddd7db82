package ntfs

import (
	"errors"
)

// mftBitmap is an in-memory copy of $MFT's $BITMAP (one bit per record,
// set when in use) with the MFT's record counts, as creation changes them.
type mftBitmap struct {
	s       *Stream
	attr    *Attr // the $BITMAP attribute record
	data    []byte
	changed map[int64]bool // sector-aligned offsets of changed bytes
	// records is how many records $MFT's data holds; allocRecords how
	// many its allocation could hold.
	records, allocRecords int64
	dataAttr              *Attr // $MFT's first $DATA fragment
	grown, bitmapGrown    bool
	// runs and allocSize are $MFT's data runs and allocated size, grown
	// when the MFT needs more clusters (runsGrown).
	runs      []Run
	allocSize int64
	runsGrown bool
}

// mftGrowRecords is how many records the MFT's allocation grows by when
// it is full (at least a cluster); ntfs-3g grows it by 16 records too.
const mftGrowRecords = 16

func (c *creator) mftBitmap() (*mftBitmap, error) {
	if c.mft != nil {
		return c.mft, nil
	}
	v := c.v
	f, err := v.OpenRecord(RecordMFT)
	if err != nil {
		return nil, err
	}
	s, err := f.stream(AttrBitmap, "")
	if err != nil {
		return nil, err
	}
	if s.Resident() || s.Compressed() || s.Sparse() || len(s.Fragments) != 1 {
		return nil, formatErr(s.headerOffset, "$MFT $BITMAP", ErrUnsupported, nil, "$MFT's $BITMAP is not one plain non-resident attribute")
	}
	if s.Size() > maxMFTBitmap {
		return nil, formatErr(s.headerOffset, "$MFT $BITMAP", ErrBadAttribute, s.Size(), "bitmap larger than %d bytes", maxMFTBitmap)
	}
	m := &mftBitmap{s: s, attr: s.Fragments[0], data: make([]byte, s.Size()), changed: map[int64]bool{}}
	if _, err := s.ReadAt(m.data, 0); err != nil && len(m.data) > 0 {
		return nil, err
	}
	for _, a := range f.Attrs {
		if a.Type == AttrData && a.Name == "" && a.LowestVCN == 0 {
			m.dataAttr = a
		}
	}
	if m.dataAttr == nil {
		return nil, formatErr(f.Record.DiskOffset(), "$MFT", ErrBadRecord, nil, "no $DATA fragment at VCN 0")
	}
	m.records = v.mft.Size() / v.RecordSize
	mapped := int64(0)
	if n := len(v.mft.Runs); n > 0 {
		mapped = (v.mft.Runs[n-1].VCN + v.mft.Runs[n-1].Length) * v.ClusterSize
	}
	m.allocSize = min(v.mft.AllocatedSize(), mapped)
	m.allocRecords = m.allocSize / v.RecordSize
	m.runs = append([]Run(nil), v.mft.Runs...)
	c.mft = m
	return m, nil
}

func (m *mftBitmap) used(i int64) bool { return m.data[i/8]&(1<<(i%8)) != 0 }

func (m *mftBitmap) set(i int64, ss int64) {
	m.data[i/8] |= 1 << (i % 8)
	m.changed[i/8/ss*ss] = true
}

// allocRecord takes the lowest free MFT record from firstFreeRecord on
// and returns its number, new sequence number and the update sequence
// number to continue from. With no free record inside the MFT's data it
// extends the data by one record within the MFT's allocation (and the
// bitmap by 8 bytes within its allocation), as Windows and ntfs-3g grow
// the MFT; past the allocation it fails with ErrMFTFull.
func (c *creator) allocRecord() (num uint64, seq, usn uint16, err error) {
	v := c.v
	m, err := c.mftBitmap()
	if err != nil {
		return 0, 0, 0, err
	}
	limit := min(m.records, int64(len(m.data))*8)
	for i := int64(firstFreeRecord); i < limit; i++ {
		if i%8 == 0 && i+8 <= limit && m.data[i/8] == 0xff {
			i += 7
			continue
		}
		if m.used(i) {
			continue
		}
		seq, usn, err := c.reuse(uint64(i))
		if err != nil {
			return 0, 0, 0, err
		}
		m.set(i, v.SectorSize)
		return uint64(i), seq, usn, nil
	}
	i := max(m.records, firstFreeRecord)
	if i >= m.allocRecords {
		if err := c.growMFT(); err != nil {
			return 0, 0, 0, err
		}
	}
	if i != m.records {
		return 0, 0, 0, formatErr(m.s.headerOffset, "$MFT", ErrMFTFull, m.records, "MFT of %d records is smaller than the reserved records", m.records)
	}
	for i/8 >= int64(len(m.data)) {
		if int64(len(m.data))+ixBitmapGrowBytes > m.attr.AllocatedSize {
			return 0, 0, 0, formatErr(m.s.headerOffset, "$MFT $BITMAP", ErrMFTFull, len(m.data), "$MFT's $BITMAP of %d bytes would have to grow past its allocation", len(m.data))
		}
		m.data = append(m.data, make([]byte, ixBitmapGrowBytes)...)
		m.bitmapGrown = true
	}
	m.records++
	m.grown = true
	m.set(i, v.SectorSize)
	return uint64(i), 1, 0, nil
}

// growMFT allocates clusters for mftGrowRecords more records right after
// the MFT's last run when they are free (else wherever $Bitmap has them),
// so that the runlist in record 0 grows by little or nothing.
func (c *creator) growMFT() error {
	v, m := c.v, c.mft
	if len(v.mft.Fragments) != 1 {
		return formatErr(m.s.headerOffset, "$MFT", ErrMFTFull, m.records,
			"all %d MFT records are in use and $MFT's $DATA spans %d attribute records; growing it is not supported", m.records, len(v.mft.Fragments))
	}
	cs := v.ClusterSize
	need := (mftGrowRecords*v.RecordSize + cs - 1) / cs
	goal := int64(0)
	if n := len(m.runs); n > 0 {
		goal = m.runs[n-1].LCN + m.runs[n-1].Length
	}
	bm, err := c.bitmap()
	if err != nil {
		return err
	}
	added, err := bm.allocate(need, goal)
	if err != nil {
		return err
	}
	// The allocation may have ended inside the last cluster's records.
	m.runs = appendRuns(m.runs, added)
	last := m.runs[len(m.runs)-1]
	m.allocSize = (last.VCN + last.Length) * cs
	m.allocRecords = m.allocSize / v.RecordSize
	m.runsGrown = true
	return nil
}

// reuse returns the sequence number a free record gets and the update
// sequence number to continue from. Windows increments a record's
// sequence number when it frees the record ("incremented each time that a
// file record segment is freed; it is 0 if the segment is not used",
// Microsoft's FILE_RECORD_SEGMENT_HEADER documentation), and ntfs-3g does
// the same, so a freed record keeps its number; one never used (0, or not
// a valid FILE record) starts at 1.
func (c *creator) reuse(n uint64) (seq, usn uint16, err error) {
	rec, err := c.v.ReadRecord(n)
	if errors.Is(err, ErrBadRecord) || errors.Is(err, ErrBadFixup) {
		return 1, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if rec.InUse() {
		return 0, 0, formatErr(rec.DiskOffset(), "MFT record", ErrBadRecord, n, "record %d is free in $MFT's $BITMAP but marked in use; run chkdsk", n)
	}
	seq = rec.Sequence
	if seq == 0 {
		seq = 1
	}
	return seq, le16(rec.Raw[le16(rec.Raw[usaOffsetOff:]):]), nil
}

// flush records the grown sizes in $MFT's record and emits the changed
// bitmap sectors, each rebuilt from the disk's bytes past the data size.
func (m *mftBitmap) flush(c *creator) error {
	v := c.v
	if m.grown || m.runsGrown {
		re, err := c.edit(m.dataAttr.Record, nil)
		if err != nil {
			return err
		}
		i := re.find(AttrData, "")
		if i < 0 {
			return formatErr(m.s.headerOffset, "$MFT", ErrBadRecord, nil, "record %d lost $MFT's $DATA", m.dataAttr.Record)
		}
		size := m.records * v.RecordSize
		if m.runsGrown {
			if re.attrs[i], err = withRuns(re.attrs[i], m.runs, m.allocSize, size, size); err != nil {
				return err
			}
		} else {
			put64(re.attrs[i][attrDataSizeOff:], uint64(size))
			put64(re.attrs[i][attrInitSizeOff:], uint64(size))
		}
	}
	if m.bitmapGrown {
		re, err := c.edit(m.attr.Record, nil)
		if err != nil {
			return err
		}
		i := re.find(AttrBitmap, "")
		if i < 0 {
			return formatErr(m.s.headerOffset, "$MFT", ErrBadRecord, nil, "record %d lost $MFT's $BITMAP", m.attr.Record)
		}
		put64(re.attrs[i][attrDataSizeOff:], uint64(len(m.data)))
		put64(re.attrs[i][attrInitSizeOff:], uint64(len(m.data)))
	}
	ss := v.SectorSize
	for off := range m.changed {
		ext, err := runExtents(m.s.Runs, v.ClusterSize, off, ss)
		if err != nil {
			return err
		}
		sector := make([]byte, ss)
		pos := int64(0)
		for _, e := range ext {
			if err := v.readAt(sector[pos:pos+e.Length], e.Offset, "$MFT $BITMAP"); err != nil {
				return err
			}
			pos += e.Length
		}
		copy(sector, m.data[off:min(off+ss, int64(len(m.data)))])
		c.writes = append(c.writes, splitWrite(sector, ext, WriteBitmap)...)
	}
	return nil
}
