package ewf

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"fmt"
	"sync"
)

// verifyWindow is how much media one round of Verify reads, inflated on
// all CPUs, then hashed in order while the next window is read.
const verifyWindow = 16 << 20

// VerifyResult holds the digests stored in a set and those computed over
// its media.
type VerifyResult struct {
	Stored   Hashes
	Computed Hashes
	Problems []error // faults a redundant copy made harmless
}

// OK reports whether every stored digest equals the computed one (true
// when none is stored: every chunk's own checksum held).
func (r VerifyResult) OK() bool { return len(r.Mismatches()) == 0 }

// Mismatches names each stored digest that differs from the computed one.
func (r VerifyResult) Mismatches() []string {
	var out []string
	if r.Stored.MD5 != nil && !bytes.Equal(r.Stored.MD5, r.Computed.MD5) {
		out = append(out, fmt.Sprintf("MD5 stored %x, computed %x", r.Stored.MD5, r.Computed.MD5))
	}
	if r.Stored.SHA1 != nil && !bytes.Equal(r.Stored.SHA1, r.Computed.SHA1) {
		out = append(out, fmt.Sprintf("SHA-1 stored %x, computed %x", r.Stored.SHA1, r.Computed.SHA1))
	}
	return out
}

// Verify reads all of im's media, checking every chunk, and computes its
// MD5 (and SHA-1, when one is stored) to compare with the stored ones.
// progress, if not nil, is called with the bytes done so far. A chunk that
// cannot be read ends it with that chunk's error. Chunks bypass the cache,
// which a whole pass would only flush.
func Verify(ctx context.Context, im *Image, progress func(done, total int64)) (VerifyResult, error) {
	res := VerifyResult{Stored: im.hashes, Problems: im.problems}
	hm, hs := md5.New(), sha1.New()
	// SHA-1 costs as much as MD5 again; it is computed only to compare.
	withSHA1 := im.hashes.SHA1 != nil
	// Two windows: the digests of one are computed while the next is read.
	bufs := [2][]byte{make([]byte, verifyWindow), make([]byte, verifyWindow)}
	var hashing sync.WaitGroup
	k := 0
	for off := int64(0); off < im.size; off += verifyWindow {
		if err := ctx.Err(); err != nil {
			hashing.Wait()
			return res, err
		}
		n := min(int64(verifyWindow), im.size-off)
		w := bufs[k%2][:n]
		k++
		if err := im.fill(w, off, false); err != nil {
			hashing.Wait()
			return res, err
		}
		hashing.Wait()
		hashing.Add(1)
		go func() { hm.Write(w); hashing.Done() }()
		if withSHA1 {
			hashing.Add(1)
			go func() { hs.Write(w); hashing.Done() }()
		}
		if progress != nil {
			progress(off+n, im.size)
		}
	}
	hashing.Wait()
	res.Computed = Hashes{MD5: hm.Sum(nil)}
	if withSHA1 {
		res.Computed.SHA1 = hs.Sum(nil)
	}
	return res, nil
}
