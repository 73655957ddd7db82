package ntfs

import (
	"bytes"

	"github.com/kvmify/kvmify/disk"
)

// planDataChunk bounds how much of the old data is read at once while
// diffing, so memory stays flat whatever the file size.
const planDataChunk = 1 << 20

// planData emits writes for the sectors of content that differ from what
// the disk holds now, following runs (the file's runlist after any
// allocation). Adjacent changed sectors on disk become one write. The
// tail of the last sector past the new length keeps the disk's bytes, so
// rewriting a file with identical content plans no data writes at all.
func (p *planner) planData(runs []Run, content []byte) error {
	v := p.v
	cs, ss := v.ClusterSize, v.SectorSize
	newLen := int64(len(content))
	var pending *disk.Write
	flush := func() {
		if pending != nil {
			p.writes = append(p.writes, *pending)
			pending = nil
		}
	}
	for _, r := range runs {
		start, end := r.VCN*cs, min((r.VCN+r.Length)*cs, (newLen+ss-1)/ss*ss)
		if start >= end {
			continue
		}
		if r.Sparse {
			return formatErr(p.s.headerOffset, "runlist", ErrNotPlannable, r.VCN, "sparse run at VCN %d", r.VCN)
		}
		for off := start; off < end; off += planDataChunk {
			n := min(planDataChunk, end-off)
			pos := r.LCN*cs + (off - start)
			old := make([]byte, n)
			if err := v.readAt(old, pos, p.s.Type.String()+" data"); err != nil {
				return err
			}
			for i := int64(0); i < n; i += ss {
				sector := old[i : i+ss]
				fileOff := off + i
				want := content[fileOff:min(fileOff+ss, newLen)]
				if bytes.Equal(sector[:len(want)], want) {
					flush()
					continue
				}
				data := make([]byte, ss)
				copy(data, sector)
				copy(data, want)
				if pending != nil && pending.Offset+int64(len(pending.Data)) == pos+i {
					pending.Data = append(pending.Data, data...)
				} else {
					flush()
					pending = &disk.Write{Offset: pos + i, Data: data, What: WriteData}
				}
			}
		}
		flush()
	}
	flush()
	return nil
}
