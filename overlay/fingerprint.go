package overlay

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/disk"
)

// Fingerprint sampling; see the package documentation for what it catches.
const (
	fingerprintDomain  = "kvmify-overlay-fingerprint-v1"
	fingerprintEdge    = 1 << 20  // bytes hashed at each end of the source
	fingerprintSpread  = 16       // spread samples between the ends
	fingerprintSample  = 64 << 10 // bytes per spread sample
	fingerprintMaxRead = fingerprintEdge
)

// fingerprintSamples lists the [offset, length) ranges of a size-byte
// source that the fingerprint hashes, in order, clipped to the source.
func fingerprintSamples(size int64) [][2]int64 {
	var out [][2]int64
	add := func(off, n int64) {
		if off < 0 {
			n += off
			off = 0
		}
		n = min(n, size-off)
		if n > 0 {
			out = append(out, [2]int64{off, n})
		}
	}
	add(0, fingerprintEdge)
	for i := int64(1); i <= fingerprintSpread; i++ {
		add(size/(fingerprintSpread+1)*i, fingerprintSample)
	}
	add(size-fingerprintEdge, fingerprintEdge)
	return out
}

// FingerprintSampledBytes is how many distinct bytes of a size-byte source
// the sample fingerprint reads (about 3 MiB for any source over that).
func FingerprintSampledBytes(size int64) int64 {
	var total, end int64
	for _, s := range fingerprintSamples(size) {
		lo, hi := max(s[0], end), s[0]+s[1]
		if hi > lo {
			total += hi - lo
		}
		end = max(end, hi)
	}
	return total
}

// fingerprint hashes the source's size and sampled regions of it.
func fingerprint(r io.ReaderAt, size int64) ([32]byte, error) {
	h := sha256.New()
	h.Write([]byte(fingerprintDomain))
	var sz [8]byte
	binary.LittleEndian.PutUint64(sz[:], uint64(size))
	h.Write(sz[:])
	buf := make([]byte, fingerprintMaxRead)
	for _, s := range fingerprintSamples(size) {
		off, b := s[0], buf[:s[1]]
		if m, err := r.ReadAt(b, off); m != len(b) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return [32]byte{}, fmt.Errorf("fingerprinting source at byte %d: %w", off, err)
		}
		var o [8]byte
		binary.LittleEndian.PutUint64(o[:], uint64(off))
		h.Write(o[:])
		h.Write(b)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}

// SourceSHA256 is the sha256 of every byte of src, what Options.FullHash
// records and checks. It reads the whole source.
func SourceSHA256(src disk.Reader) ([32]byte, error) {
	h := sha256.New()
	size := src.Size()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		b := buf[:min(int64(len(buf)), size-off)]
		if m, err := src.ReadAt(b, off); m != len(b) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return [32]byte{}, fmt.Errorf("hashing source at byte %d: %w", off+int64(m), err)
		}
		h.Write(b)
		off += int64(len(b))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}
