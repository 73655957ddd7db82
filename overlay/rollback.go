package overlay

import (
	"fmt"
	"os"
)

// Rollback accepts generation gen of the overlay file at path in place of
// its newest commit, without its source: what Options.AcceptGeneration does
// on Open. It refuses unless gen's root and map record are intact and every
// block it references passes its checksum (proving that no slot was reused
// since); then it commits that state twice, so that both roots hold it, and
// returns the overlay's new Info. The writes of the generations after gen
// are given up.
func Rollback(path string, gen uint64) (*Info, error) {
	if gen == 0 {
		return nil, fmt.Errorf("overlay %s: generation 0 does not exist; generations start at 1", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	st, size, err := lockAndLoad(f, path, loadOptions{accept: gen})
	if err != nil {
		f.Close()
		return nil, err
	}
	// No source is needed: the commits below read no block, they only
	// rewrite the map record and the roots.
	o := newOverlay(f, path, nil, int64(st.hdr.SourceSize), int(st.hdr.BlockSize))
	if err := o.adopt(st, size); err != nil {
		f.Close()
		return nil, err
	}
	if err := o.Discard(); err != nil {
		return nil, err
	}
	return ReadInfo(path)
}
