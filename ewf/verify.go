package ewf

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"fmt"
	"runtime"
	"sync"
)

// verifyWindow is how much media one round of Verify reads: split among
// the CPUs to inflate in parallel, then hashed in order.
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
// MD5 and SHA-1 to compare with the stored ones. progress, if not nil, is
// called with the bytes done so far. A chunk that cannot be read ends it
// with that chunk's error. Chunks bypass the cache, which a whole pass
// would only flush.
func Verify(ctx context.Context, im *Image, progress func(done, total int64)) (VerifyResult, error) {
	res := VerifyResult{Stored: im.hashes, Problems: im.problems}
	hm, hs := md5.New(), sha1.New()
	workers := max(1, runtime.GOMAXPROCS(0))
	window := make([]byte, verifyWindow)
	for off := int64(0); off < im.size; off += verifyWindow {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(int64(verifyWindow), im.size-off)
		if err := im.readParallel(window[:n], off, workers); err != nil {
			return res, err
		}
		hm.Write(window[:n])
		hs.Write(window[:n])
		if progress != nil {
			progress(off+n, im.size)
		}
	}
	res.Computed = Hashes{MD5: hm.Sum(nil), SHA1: hs.Sum(nil)}
	return res, nil
}

// readParallel fills p from media offset off (chunk-aligned), the chunks
// shared among workers goroutines, without the cache.
func (im *Image) readParallel(p []byte, off int64, workers int) error {
	first := off / im.chunk
	last := (off + int64(len(p)) - 1) / im.chunk
	var next = first
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				ci := next
				next++
				stop := firstErr != nil
				mu.Unlock()
				if ci > last || stop {
					return
				}
				data, err := im.readChunk(ci)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				copy(p[ci*im.chunk-off:], data)
			}
		}()
	}
	wg.Wait()
	return firstErr
}
