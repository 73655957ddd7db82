package overlay

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Info describes an overlay file's last committed state, read without its
// source.
type Info struct {
	SourceSize        int64
	SourceFingerprint string // hex sha256; see the package documentation
	BlockSize         int
	Generation        uint64 // commits since creation, plus one
	Extents           []Extent
	MetaKeys          []string // sorted
	Meta              map[string][]byte
}

// ReadInfo reads an overlay file's header and last commit. It never writes
// and does not take the overlay's lock, so it works while a server uses it
// (showing the last flushed state).
func ReadInfo(path string) (*Info, error) {
	// A commit running meanwhile can grow the file past the size read first,
	// or free the map record read after its root; reading again then finds
	// a consistent newer commit.
	const attempts = 3
	var err error
	for range attempts {
		var in *Info
		if in, err = readInfo(path); !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrCorrupt) {
			return in, err
		}
	}
	return nil, err
}

func readInfo(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	st, err := load(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("overlay %s: %w", path, err)
	}
	return st.info(), nil
}

func (st *loaded) info() *Info {
	in := &Info{
		SourceSize:        int64(st.hdr.SourceSize),
		SourceFingerprint: hex.EncodeToString(st.hdr.Fingerprint[:]),
		BlockSize:         int(st.hdr.BlockSize),
		Generation:        st.root.Generation,
		Extents:           extentsOf(st.rec.Entries, int(st.hdr.BlockSize), int64(st.hdr.SourceSize)),
		Meta:              st.rec.Meta,
	}
	for k := range st.rec.Meta {
		in.MetaKeys = append(in.MetaKeys, k)
	}
	slices.Sort(in.MetaKeys)
	return in
}
