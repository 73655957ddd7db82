package ntfs

import "github.com/kvmify/kvmify/disk"

// $Bitmap holds one bit per cluster, set when the cluster is in use. The
// allocator reads it in chunks so that planning on a large volume touches
// only the part of the bitmap it searches.
const (
	bitmapChunkBytes = 4096
	bitsPerByte      = 8
)

// clusterBitmap is a copy-on-read view of $Bitmap that records which bytes
// the planner changed.
type clusterBitmap struct {
	v       *Volume
	s       *Stream
	chunks  map[int64][]byte
	changed map[int64]bool // bitmap byte offsets of changed sectors
}

func (v *Volume) openBitmap() (*clusterBitmap, error) {
	f, err := v.OpenRecord(RecordBitmap)
	if err != nil {
		return nil, err
	}
	s, err := f.Stream("")
	if err != nil {
		return nil, err
	}
	if s.Resident() || s.Compressed() || s.Sparse() {
		return nil, formatErr(s.headerOffset, "$Bitmap", ErrUnsupported, nil, "$Bitmap data is not a plain non-resident stream")
	}
	if need := (v.clusters + bitsPerByte - 1) / bitsPerByte; s.Size() < need {
		return nil, formatErr(s.headerOffset, "$Bitmap", ErrBadAttribute, s.Size(), "bitmap of %d bytes cannot cover %d clusters", s.Size(), v.clusters)
	}
	return &clusterBitmap{v: v, s: s, chunks: map[int64][]byte{}, changed: map[int64]bool{}}, nil
}

// chunk returns the cached bitmap chunk holding byte off.
func (b *clusterBitmap) chunk(off int64) ([]byte, int64, error) {
	start := off / bitmapChunkBytes * bitmapChunkBytes
	if c, ok := b.chunks[start]; ok {
		return c, start, nil
	}
	c := make([]byte, min(bitmapChunkBytes, b.s.Size()-start))
	if _, err := b.s.ReadAt(c, start); err != nil && len(c) > 0 {
		return nil, 0, err
	}
	b.chunks[start] = c
	return c, start, nil
}

// used reports whether cluster lcn is allocated; clusters outside the
// volume count as used.
func (b *clusterBitmap) used(lcn int64) (bool, error) {
	if lcn < 0 || lcn >= b.v.clusters {
		return true, nil
	}
	c, start, err := b.chunk(lcn / bitsPerByte)
	if err != nil {
		return false, err
	}
	return c[lcn/bitsPerByte-start]&(1<<(lcn%bitsPerByte)) != 0, nil
}

func (b *clusterBitmap) mark(lcn int64) error {
	c, start, err := b.chunk(lcn / bitsPerByte)
	if err != nil {
		return err
	}
	c[lcn/bitsPerByte-start] |= 1 << (lcn % bitsPerByte)
	b.changed[lcn/bitsPerByte/b.v.SectorSize*b.v.SectorSize] = true
	return nil
}

// skipUsed advances from the used cluster lcn past fully used bitmap
// bytes, so a scan over a full region costs a byte per 8 clusters.
func (b *clusterBitmap) skipUsed(lcn, to int64) int64 {
	lcn++
	for lcn%bitsPerByte == 0 && lcn+bitsPerByte <= to {
		c, start, err := b.chunk(lcn / bitsPerByte)
		if err != nil || c[lcn/bitsPerByte-start] != 0xff {
			break
		}
		lcn += bitsPerByte
	}
	return lcn
}

// freeRunAt returns how many free clusters start at lcn, up to limit.
func (b *clusterBitmap) freeRunAt(lcn, limit int64) (int64, error) {
	n := int64(0)
	for n < limit {
		if (lcn+n)%bitsPerByte == 0 && n+bitsPerByte <= limit && lcn+n+bitsPerByte <= b.v.clusters {
			c, start, err := b.chunk((lcn + n) / bitsPerByte)
			if err != nil {
				return n, err
			}
			if c[(lcn+n)/bitsPerByte-start] == 0 {
				n += bitsPerByte
				continue
			}
		}
		u, err := b.used(lcn + n)
		if err != nil || u {
			return n, err
		}
		n++
	}
	return n, nil
}

// freeExtents calls fn for each run of free clusters that starts in
// [from, to), in order, until fn returns false. Runs are clipped to to and
// measured only up to limit clusters, so a search on a nearly empty volume
// stops reading the bitmap once it has what it needs.
func (b *clusterBitmap) freeExtents(from, to, limit int64, fn func(start, length int64) bool) error {
	for lcn := from; lcn < to; {
		u, err := b.used(lcn)
		if err != nil {
			return err
		}
		if u {
			lcn = b.skipUsed(lcn, to)
			continue
		}
		n, err := b.freeRunAt(lcn, min(limit, to-lcn))
		if err != nil {
			return err
		}
		if !fn(lcn, n) {
			return nil
		}
		lcn += n
	}
	return nil
}

// allocate finds need free clusters and marks them used. It prefers, in
// order: clusters right after goal (so the last run just grows), the
// nearest free extent that holds all of them (searching after goal first,
// then before it, only as far back as the best candidate after), and
// finally as many free extents as it takes, taken from goal onwards and
// then from the volume's start.
func (b *clusterBitmap) allocate(need, goal int64) ([]Run, error) {
	clusters := b.v.clusters
	if goal < 0 || goal >= clusters {
		goal = 0
	}
	picked, err := b.nearestFit(need, goal)
	if err != nil {
		return nil, err
	}
	if picked == nil {
		var got int64
		collect := func(start, length int64) bool {
			take := min(length, need-got)
			picked = append(picked, Run{LCN: start, Length: take})
			got += take
			return got < need
		}
		if err := b.freeExtents(goal, clusters, need, collect); err != nil {
			return nil, err
		}
		if got < need {
			if err := b.freeExtents(0, goal, need, collect); err != nil {
				return nil, err
			}
		}
		if got < need {
			return nil, formatErr(b.s.headerOffset, "$Bitmap", ErrNoSpace, need, "need %d free clusters, volume has %d", need, got)
		}
	}
	for _, r := range picked {
		for lcn := r.LCN; lcn < r.LCN+r.Length; lcn++ {
			if err := b.mark(lcn); err != nil {
				return nil, err
			}
		}
	}
	return picked, nil
}

// nearestFit returns the single run of need free clusters closest to goal,
// or nil when no free extent is that large.
func (b *clusterBitmap) nearestFit(need, goal int64) ([]Run, error) {
	after := int64(-1)
	err := b.freeExtents(goal, b.v.clusters, need, func(start, length int64) bool {
		if length >= need {
			after = start
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if after == goal {
		return []Run{{LCN: goal, Length: need}}, nil
	}
	// A candidate before goal ends at most as far from goal as after is.
	from := int64(0)
	if after >= 0 {
		from = max(0, goal-(after-goal)-need)
	}
	before := int64(-1)
	err = b.freeExtents(from, goal, goal-from, func(start, length int64) bool {
		if length >= need {
			before = start + length - need // the end nearest goal
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	switch {
	case before >= 0 && (after < 0 || goal-(before+need) < after-goal):
		return []Run{{LCN: before, Length: need}}, nil
	case after >= 0:
		return []Run{{LCN: after, Length: need}}, nil
	}
	return nil, nil
}

// writes returns whole-sector writes of the changed parts of $Bitmap's
// data, each sector rebuilt from the disk's bytes so that bytes past the
// data size are kept.
func (b *clusterBitmap) writes() ([]disk.Write, error) {
	var out []disk.Write
	ss := b.v.SectorSize
	for off := range b.changed {
		ext, err := b.s.diskExtents(off, ss)
		if err != nil {
			return nil, err
		}
		sector := make([]byte, ss)
		pos := int64(0)
		for _, e := range ext {
			if e.Offset < 0 {
				return nil, formatErr(b.s.headerOffset, "$Bitmap", ErrUnsupported, off, "bitmap sector in a sparse run")
			}
			if err := b.v.readAt(sector[pos:pos+e.Length], e.Offset, "$Bitmap data"); err != nil {
				return nil, err
			}
			pos += e.Length
		}
		for i := int64(0); i < ss && off+i < b.s.Size(); i++ {
			c, start, err := b.chunk(off + i)
			if err != nil {
				return nil, err
			}
			sector[i] = c[off+i-start]
		}
		pos = 0
		for _, e := range ext {
			out = append(out, disk.Write{Offset: e.Offset, Data: sector[pos : pos+e.Length], What: WriteBitmap})
			pos += e.Length
		}
	}
	sortWrites(out)
	return out, nil
}
