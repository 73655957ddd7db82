package overlay

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/kvmify/kvmify/disk"
)

// Info describes an overlay file's last committed state, read without its
// source.
type Info struct {
	SourceSize int64
	// SourceSampleFingerprint is the hex sha256 of the source's size and
	// of SampledBytes bytes sampled from it (the first and last MiB and 16
	// spread 64 KiB blocks): it is not the source's sha256.
	SourceSampleFingerprint string
	SampledBytes            int64
	// SourceSHA256 is the hex sha256 of the whole source, "" if the
	// overlay was created without Options.FullHash.
	SourceSHA256 string
	BlockSize    int
	Generation   uint64 // commits since creation, plus one
	Extents      []Extent
	MetaKeys     []string // sorted
	Meta         map[string][]byte
	// Warnings name damage that did not prevent reading the commit (a
	// commit root copy that fails its check while its twin is intact).
	Warnings []string
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
		if in, err = readInfo(path); !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrCommitDamaged) {
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
	st, err := load(f, fi.Size(), loadOptions{noVerify: true})
	if err != nil {
		return nil, withPath(err, path)
	}
	return st.info(), nil
}

func (st *loaded) info() *Info {
	in := &Info{
		SourceSize:              int64(st.hdr.SourceSize),
		SourceSampleFingerprint: hex.EncodeToString(st.hdr.Fingerprint[:]),
		SampledBytes:            FingerprintSampledBytes(int64(st.hdr.SourceSize)),
		BlockSize:               int(st.hdr.BlockSize),
		Generation:              st.root.Generation,
		Extents:                 extentsOf(st.rec.Entries, int(st.hdr.BlockSize), int64(st.hdr.SourceSize)),
		Meta:                    st.rec.Meta,
		Warnings:                st.warnings,
	}
	if st.hdr.Flags&flagFullHash != 0 {
		in.SourceSHA256 = hex.EncodeToString(st.hdr.SourceSHA256[:])
	}
	for k := range st.rec.Meta {
		in.MetaKeys = append(in.MetaKeys, k)
	}
	slices.Sort(in.MetaKeys)
	return in
}

// SourceCheck is the result of CheckSource: which of the overlay's records
// of its source a source matches.
type SourceCheck struct {
	SizeMatches   bool `json:"size_matches"`
	SampleMatches bool `json:"sample_fingerprint_matches"`
	// FullChecked is set when the overlay records a full sha256, which was
	// then computed over the whole source.
	FullChecked  bool   `json:"full_sha256_checked"`
	FullMatches  bool   `json:"full_sha256_matches"`
	SourceSHA256 string `json:"source_sha256,omitempty"` // computed, when FullChecked
}

// Matches reports whether src matched everything the overlay records.
func (c *SourceCheck) Matches() bool {
	return c.SizeMatches && c.SampleMatches && (!c.FullChecked || c.FullMatches)
}

// CheckSource compares src with what the overlay file at path records of
// its source: size, sample fingerprint and, if recorded (Options.FullHash),
// the sha256 of every byte, which it then reads. It writes nothing.
func CheckSource(path string, src disk.Reader) (*SourceCheck, error) {
	in, err := ReadInfo(path)
	if err != nil {
		return nil, err
	}
	c := &SourceCheck{SizeMatches: src.Size() == in.SourceSize}
	if !c.SizeMatches {
		return c, nil
	}
	fp, err := fingerprint(src, src.Size())
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	c.SampleMatches = hex.EncodeToString(fp[:]) == in.SourceSampleFingerprint
	if in.SourceSHA256 != "" {
		sum, err := SourceSHA256(src)
		if err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
		c.FullChecked = true
		c.SourceSHA256 = hex.EncodeToString(sum[:])
		c.FullMatches = c.SourceSHA256 == in.SourceSHA256
	}
	return c, nil
}
