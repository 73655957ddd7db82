package ewf

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Twins: a disk holds many chunks whose compressed bytes are identical
// (every all-zero chunk deflates to the same few dozen bytes, and so does
// every chunk of one repeated fill pattern). Inflating and checking such a
// chunk again gives the same bytes and the same verdict, so the inflated
// bytes of small stored chunks are kept by their stored bytes: a chunk whose
// stored bytes equal, byte for byte, those of a chunk that already inflated
// and passed its Adler-32 shares that chunk's bytes. A chunk that differs in
// even one stored byte is no twin and is inflated and checked on its own.

const (
	// twinMaxStored is the largest stored chunk looked up as a twin; fill
	// patterns compress to well under it, real data to much more.
	twinMaxStored = 1024
	// twinMaxEntries bounds the table: at most this many inflated chunks
	// (64 × 32 KiB = 2 MiB for the usual chunk size) are kept.
	twinMaxEntries = 64
)

// twinTable maps the stored bytes of small compressed chunks that passed
// their checks to their inflated bytes, which are never modified.
type twinTable struct {
	seed    maphash.Seed
	mu      sync.RWMutex
	entries map[uint64]*twin
}

type twin struct {
	stored []byte
	data   []byte // as inflated: a whole chunk or a short last one
}

func newTwinTable() *twinTable {
	return &twinTable{seed: maphash.MakeSeed(), entries: map[uint64]*twin{}}
}

// lookup returns the inflated bytes of a checked chunk stored exactly as
// stored, or nil.
func (t *twinTable) lookup(stored []byte) []byte {
	if len(stored) > twinMaxStored {
		return nil
	}
	h := maphash.Bytes(t.seed, stored)
	t.mu.RLock()
	tw := t.entries[h]
	t.mu.RUnlock()
	if tw == nil || !bytes.Equal(tw.stored, stored) {
		return nil
	}
	return tw.data
}

// add records that stored inflated to data and passed its checks. The
// first chunk seen for a hash keeps its place; when the table is full,
// nothing is added.
func (t *twinTable) add(stored, data []byte) {
	if len(stored) > twinMaxStored {
		return
	}
	h := maphash.Bytes(t.seed, stored)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.entries[h]; ok || len(t.entries) >= twinMaxEntries {
		return
	}
	t.entries[h] = &twin{stored: bytes.Clone(stored), data: data}
}

// verifiedSet is one bit per chunk: set once the chunk's stored bytes
// passed their checksum. A plain chunk so marked is read again as just the
// bytes asked for, straight from its segment file, which the reader opened
// read-only and assumes no one rewrites while it is open (as libewf does).
type verifiedSet []atomic.Uint64

func newVerifiedSet(chunks int64) verifiedSet { return make(verifiedSet, (chunks+63)/64) }

func (v verifiedSet) has(ci int64) bool { return v[ci/64].Load()&(1<<(ci%64)) != 0 }

func (v verifiedSet) mark(ci int64) { v[ci/64].Or(1 << (ci % 64)) }
