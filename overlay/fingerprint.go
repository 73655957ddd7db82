package overlay

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Fingerprint sampling; see the package documentation for what it catches.
const (
	fingerprintDomain  = "kvmify-overlay-fingerprint-v1"
	fingerprintEdge    = 1 << 20  // bytes hashed at each end of the source
	fingerprintSpread  = 16       // spread samples between the ends
	fingerprintSample  = 64 << 10 // bytes per spread sample
	fingerprintMaxRead = fingerprintEdge
)

// fingerprint hashes the source's size and sampled regions of it.
func fingerprint(r io.ReaderAt, size int64) ([32]byte, error) {
	h := sha256.New()
	h.Write([]byte(fingerprintDomain))
	var sz [8]byte
	binary.LittleEndian.PutUint64(sz[:], uint64(size))
	h.Write(sz[:])
	buf := make([]byte, fingerprintMaxRead)
	sample := func(off, n int64) error {
		if off < 0 {
			n += off
			off = 0
		}
		if off+n > size {
			n = size - off
		}
		if n <= 0 {
			return nil
		}
		b := buf[:n]
		if m, err := r.ReadAt(b, off); m != len(b) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("fingerprinting source at byte %d: %w", off, err)
		}
		var o [8]byte
		binary.LittleEndian.PutUint64(o[:], uint64(off))
		h.Write(o[:])
		h.Write(b)
		return nil
	}
	if err := sample(0, fingerprintEdge); err != nil {
		return [32]byte{}, err
	}
	for i := int64(1); i <= fingerprintSpread; i++ {
		if err := sample(size/(fingerprintSpread+1)*i, fingerprintSample); err != nil {
			return [32]byte{}, err
		}
	}
	if err := sample(size-fingerprintEdge, fingerprintEdge); err != nil {
		return [32]byte{}, err
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}
