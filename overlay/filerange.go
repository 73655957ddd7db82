package overlay

import (
	"os"

	"github.com/kvmify/kvmify/disk"
)

var _ disk.FileRanger = (*Overlay)(nil)

// FileRange passes a range none of whose blocks the overlay holds through
// to a base that can map it to a file. What the overlay holds is left to
// ReadAt: its slots are rewritten in place and reused after a commit, so a
// file range there could change under a reply still being sent, and only
// ReadAt verifies their checksums before handing bytes out.
func (o *Overlay) FileRange(off, n int64) (*os.File, int64, bool) {
	fr, ok := o.base.(disk.FileRanger)
	if !ok || n <= 0 || off < 0 || off > o.size || n > o.size-off {
		return nil, 0, false
	}
	bs := int64(o.bs)
	o.mu.RLock()
	direct := !o.closed && o.bmap.allUnmapped(off/bs, (off+n-1)/bs)
	o.mu.RUnlock()
	if !direct {
		return nil, 0, false
	}
	return fr.FileRange(off, n)
}
