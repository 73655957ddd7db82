package overlay

import "github.com/kvmify/kvmify/disk"

var _ disk.QuickWriter = (*Overlay)(nil)

// QuickWriteAt writes p at off when no block it touches needs its old
// content from the source: blocks it covers whole, and partly covered ones
// the overlay already holds. A partial write into an unchanged block must
// first read that block from the source, which may wait for a device, so it
// is left to WriteAt.
func (o *Overlay) QuickWriteAt(p []byte, off int64) (bool, error) {
	if err := o.checkRange(off, int64(len(p))); err != nil {
		return true, err
	}
	if len(p) == 0 {
		return true, nil
	}
	bs := int64(o.bs)
	end := off + int64(len(p))
	o.mu.RLock()
	// A block once in the map stays there (zeroing maps it as zero), so the
	// answer cannot turn false before WriteAt runs.
	head := off%bs == 0 || o.bmap.get(off/bs) != valueUnmapped
	tail := end%bs == 0 || o.bmap.get((end-1)/bs) != valueUnmapped
	o.mu.RUnlock()
	if !head || !tail {
		return false, nil
	}
	_, err := o.WriteAt(p, off)
	return true, err
}
