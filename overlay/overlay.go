package overlay

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/kvmify/kvmify/disk"
)

// Options control how Open treats the overlay file.
type Options struct {
	// Ephemeral keeps the overlay in a temporary file that is already
	// unlinked, so it disappears at Close or on a crash; the path is ignored.
	Ephemeral bool
	// SourcePath is the source image's path; an overlay path naming the
	// same file is refused.
	SourcePath string
	// AcceptGeneration accepts an older commit when the newest is damaged
	// (see CommitError): the overlay opens at that generation if its root
	// and map record are intact and every block it references passes its
	// checksum, and both commit roots are then rewritten. The writes of
	// later generations are given up. 0 accepts nothing.
	AcceptGeneration uint64
	// FullHash makes a new overlay record the sha256 of the whole source
	// (read once, in full) besides the sampled fingerprint, and makes
	// opening an existing one check the source against it; an overlay
	// created without it is refused, as it cannot be checked.
	FullHash bool
	// OnDataError, if set, is called with each stored block found failing
	// its checksum (once per block and slot), besides the read that found
	// it failing with that error: an NBD client sees only EIO, so a server
	// passes it to its log. It must not call back into the Overlay.
	OnDataError func(*DataError)
}

// Extent is a byte range of the disk that differs from the source: it holds
// overlay data, or reads as zeros when Zero is set.
type Extent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
	Zero   bool  `json:"zero"`
}

// Overlay is a copy-on-write disk over a read-only base.
type Overlay struct {
	f         *os.File
	path      string
	base      disk.Reader
	size      int64
	bs        int
	spb       int // checksums per block
	nblocks   int64
	ephemeral bool

	mu     sync.RWMutex // guards the fields below; never held across I/O
	bmap   *blockMap
	slots  *slotAllocator
	sums   []uint32 // CRC-32C of each sumSize bytes of each slot, spb per slot
	meta   map[string][]byte
	gen    uint64
	closed bool

	dirty   atomic.Bool  // something changed since the last commit
	gate    sync.RWMutex // writers hold it shared; a commit's snapshot holds it exclusively
	flushMu sync.Mutex   // one commit at a time
	stripes [lockStripes]sync.RWMutex
	bufs    sync.Pool

	onDataError func(*DataError)
	reported    sync.Map // [2]int64{block, slot} already passed to onDataError
}

// lockStripes is the number of per-block locks blocks are hashed onto.
const lockStripes = 128

var (
	_ disk.Reader  = (*Overlay)(nil)
	_ disk.Writer  = (*Overlay)(nil)
	_ disk.Flusher = (*Overlay)(nil)
	_ disk.Trimmer = (*Overlay)(nil)
	_ disk.Zeroer  = (*Overlay)(nil)
)

// DefaultPath is the overlay path used when the user names none: the image's
// base name plus ".kvmify-overlay", in the current directory.
func DefaultPath(imagePath string) string {
	return filepath.Base(imagePath) + ".kvmify-overlay"
}

// Open opens the overlay at path over base, creating it if it does not exist
// and otherwise checking that it was made for this source.
func Open(path string, base disk.Reader, opts Options) (*Overlay, error) {
	size := base.Size()
	if size < 0 || blockCount(size, defaultBlockSize) > maxBlocks {
		return nil, fmt.Errorf("overlay: source size %d is not supported", size)
	}
	fp, err := fingerprint(base, size)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if opts.Ephemeral {
		o, err := openEphemeral(base, size, fp)
		if o != nil {
			o.onDataError = opts.OnDataError
		}
		return o, err
	}
	var full *[32]byte
	if opts.FullHash {
		sum, err := SourceSHA256(base)
		if err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
		full = &sum
	}
	if err := checkNotSource(path, base, opts.SourcePath); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, size, fp, full); err != nil {
			return nil, fmt.Errorf("overlay: creating %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	o, err := openExisting(f, path, base, size, fp, full, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

func openExisting(f *os.File, path string, base disk.Reader, size int64, fp [32]byte, full *[32]byte, opts Options) (*Overlay, error) {
	st, fileSize, err := lockAndLoad(f, path, loadOptions{accept: opts.AcceptGeneration})
	if err != nil {
		return nil, err
	}
	if int64(st.hdr.SourceSize) != size || st.hdr.Fingerprint != fp {
		return nil, fmt.Errorf("%w: overlay %s was made for a source of %d bytes with sample fingerprint %x, but source %s has %d bytes and sample fingerprint %x",
			ErrSourceMismatch, path, st.hdr.SourceSize, st.hdr.Fingerprint, sourceName(base, opts.SourcePath), size, fp)
	}
	if full != nil {
		if st.hdr.Flags&flagFullHash == 0 {
			return nil, fmt.Errorf("overlay %s records no full sha256 of its source (it was created without one), so the source cannot be checked in full", path)
		}
		if *full != st.hdr.SourceSHA256 {
			return nil, fmt.Errorf("%w: overlay %s was made for a source whose sha256 is %x, but source %s has sha256 %x",
				ErrSourceMismatch, path, st.hdr.SourceSHA256, sourceName(base, opts.SourcePath), *full)
		}
	}
	o := newOverlay(f, path, base, size, int(st.hdr.BlockSize))
	o.onDataError = opts.OnDataError
	if err := o.adopt(st, fileSize); err != nil {
		return nil, err
	}
	return o, nil
}

// lockAndLoad takes the overlay's lock and loads its committed state.
func lockAndLoad(f *os.File, path string, lo loadOptions) (*loaded, int64, error) {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, 0, fmt.Errorf("overlay %s: %w", path, ErrLocked)
		}
		return nil, 0, fmt.Errorf("overlay %s: lock: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: %w", err)
	}
	st, err := load(f, fi.Size(), lo)
	if err != nil {
		return nil, 0, withPath(err, path)
	}
	return st, fi.Size(), nil
}

// withPath names the overlay file in an error from load.
func withPath(err error, path string) error {
	var ce *CommitError
	if errors.As(err, &ce) {
		ce.Path = path
		return ce
	}
	var de *DataError
	if errors.As(err, &de) {
		de.Path = path
	}
	return fmt.Errorf("overlay %s: %w", path, err)
}

// adopt makes the loaded state o's: its map, checksums, slots and
// metadata. An explicitly accepted older state is committed twice at once,
// so that both roots hold it and the damaged one is gone.
func (o *Overlay) adopt(st *loaded, fileSize int64) error {
	o.gen = st.root.Generation
	k := 0
	for _, e := range st.rec.Entries {
		o.bmap.set(int64(e.VBlock), e.Value)
		if e.Value >= valueSlotBase {
			s := int64(e.Value - valueSlotBase)
			o.slots.used.set(s)
			o.slots.pinned.set(s)
			o.setSums(s, 0, st.rec.Sums[k*o.spb:(k+1)*o.spb])
			k++
		}
	}
	for s := st.mapSlot; s < st.mapSlot+st.mapSlots; s++ {
		o.slots.pinned.set(s)
	}
	// Slots in the file that no commit references (left by a crash, or
	// by the commits given up) are reused by later writes.
	o.slots.high = (fileSize - dataOffset + int64(o.bs) - 1) / int64(o.bs)
	o.meta = st.rec.Meta
	if st.accepted {
		for range 2 {
			o.dirty.Store(true)
			if err := o.commit(); err != nil {
				return err
			}
		}
	}
	return nil
}

func openEphemeral(base disk.Reader, size int64, fp [32]byte) (*Overlay, error) {
	f, err := os.CreateTemp("", "kvmify-overlay-*")
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	// Unlinked at once, so not even a crash leaves it behind.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	h := newHeader(size, fp, nil)
	if _, err := f.WriteAt(h.encode(), headerOffset); err != nil {
		f.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	o := newOverlay(f, f.Name(), base, size, defaultBlockSize)
	o.ephemeral = true
	o.meta = map[string][]byte{}
	return o, nil
}

// newHeader is the header of a new overlay; full is the source's whole
// sha256, if recorded.
func newHeader(size int64, fp [32]byte, full *[32]byte) *rawHeader {
	h := &rawHeader{Version: formatVersion, BlockSize: defaultBlockSize, SourceSize: uint64(size), Fingerprint: fp,
		DataOffset: dataOffset, SumSize: sumSize}
	copy(h.Magic[:], headerMagic)
	if full != nil {
		h.Flags |= flagFullHash
		h.SourceSHA256 = *full
	}
	return h
}

func newOverlay(f *os.File, path string, base disk.Reader, size int64, bs int) *Overlay {
	o := &Overlay{
		f: f, path: path, base: base, size: size, bs: bs, spb: bs / sumSize,
		nblocks: blockCount(size, bs),
		slots:   newSlotAllocator(),
	}
	o.bmap = newBlockMap(o.nblocks)
	o.bufs.New = func() any { b := make([]byte, bs); return &b }
	return o
}

// create writes a new, empty overlay under a temporary name and links it
// into place, so path never names a half-written overlay.
func create(path string, size int64, fp [32]byte, full *[32]byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := newHeader(size, fp, full)
	const firstGeneration = 1
	root := rawRoot{Generation: firstGeneration}
	if _, err := tmp.WriteAt(h.encode(), headerOffset); err != nil {
		return err
	}
	if _, err := tmp.WriteAt(root.encodeCopies(), rootOffset(firstGeneration)); err != nil {
		return err
	}
	if err := tmp.Truncate(dataOffset); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	// Link, unlike rename, never replaces an overlay created meanwhile.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkNotSource refuses an overlay path that is the source image itself.
func checkNotSource(path string, base disk.Reader, sourcePath string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // a missing path cannot be the source; Open reports other errors
	}
	if sourcePath != "" {
		if si, err := os.Stat(sourcePath); err == nil && os.SameFile(fi, si) {
			return fmt.Errorf("overlay %s: %w %s", path, ErrSameAsSource, sourcePath)
		}
	}
	if fb, ok := base.(interface{ File() *os.File }); ok {
		if si, err := fb.File().Stat(); err == nil && os.SameFile(fi, si) {
			return fmt.Errorf("overlay %s: %w %s", path, ErrSameAsSource, sourceName(base, sourcePath))
		}
	}
	return nil
}

func sourceName(base disk.Reader, sourcePath string) string {
	if sourcePath != "" {
		return sourcePath
	}
	if n, ok := base.(interface{ Name() string }); ok {
		return n.Name()
	}
	return "(unnamed)"
}

// rootOffset is where the root of generation gen is written.
func rootOffset(gen uint64) int64 {
	if gen%2 == 0 {
		return rootAOffset
	}
	return rootBOffset
}

func (o *Overlay) slotOffset(s int64) int64 { return dataOffset + s*int64(o.bs) }

func (o *Overlay) stripe(v int64) *sync.RWMutex { return &o.stripes[v%lockStripes] }

// blockLen is the number of source bytes block v covers (less than the block
// size only for the last block).
func (o *Overlay) blockLen(v int64) int {
	if rest := o.size - v*int64(o.bs); rest < int64(o.bs) {
		return int(rest)
	}
	return o.bs
}

// Size is the disk's size, the source's.
func (o *Overlay) Size() int64 { return o.size }

// Path is the overlay file's path (a removed temporary name when ephemeral).
func (o *Overlay) Path() string { return o.path }

// ReadAt reads the overlay's view: changed blocks from the overlay, zeroed
// ones as zeros, the rest from the source. Like os.File it returns io.EOF
// for a read that ends past Size.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, disk.ErrOutOfRange
	}
	if off >= o.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > o.size-off {
		p = p[:o.size-off]
		eof = io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	bs := int64(o.bs)
	first, last := off/bs, (off+int64(len(p))-1)/bs
	o.mu.RLock()
	closed, direct := o.closed, o.bmap.allUnmapped(first, last)
	o.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	if direct {
		if err := o.readBase(p, off); err != nil {
			return 0, err
		}
		return len(p), eof
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		v, a := pos/bs, int(pos%bs)
		chunk := min(len(p)-n, o.bs-a)
		if err := o.readBlock(p[n:n+chunk], v, a); err != nil {
			return n, err
		}
		n += chunk
	}
	return n, eof
}

func (o *Overlay) readBlock(p []byte, v int64, a int) error {
	st := o.stripe(v)
	st.RLock()
	defer st.RUnlock()
	var small sumsBuf
	lo, hi := a/sumSize, (a+len(p)+sumSize-1)/sumSize
	want := small.get(hi - lo)
	o.mu.RLock()
	val := o.bmap.get(v)
	if val >= valueSlotBase {
		o.copySums(want, int64(val-valueSlotBase), lo)
	}
	o.mu.RUnlock()
	switch {
	case val == valueUnmapped:
		return o.readBase(p, v*int64(o.bs)+int64(a))
	case val == valueZero:
		clear(p)
		return nil
	default:
		return o.readSlot(p, v, int64(val-valueSlotBase), a, want)
	}
}

func (o *Overlay) readBase(p []byte, off int64) error {
	n, err := o.base.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("overlay: reading source at byte %d: %w", off+int64(n), err)
}

// readSlot reads p from offset a of slot s, which holds block v, and
// verifies every checksum granule it touches against want (their recorded
// checksums, from granule a/sumSize on). A read that is not granule-aligned
// reads the whole granules into a buffer first, so no unverified byte is
// returned.
func (o *Overlay) readSlot(p []byte, v, s int64, a int, want []uint32) error {
	lo := a &^ (sumSize - 1)
	hi := (a + len(p) + sumSize - 1) &^ (sumSize - 1)
	buf := p
	if lo != a || hi != a+len(p) {
		bp := o.bufs.Get().(*[]byte)
		defer o.bufs.Put(bp)
		buf = (*bp)[lo:hi]
	}
	off := o.slotOffset(s) + int64(lo)
	n, err := o.f.ReadAt(buf, off)
	if n != len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("overlay %s: reading slot %d at byte %d: %w", o.path, s, off+int64(n), err)
	}
	if err := o.verify(buf, want, v, s, lo); err != nil {
		return err
	}
	if len(buf) != len(p) || &buf[0] != &p[0] {
		copy(p, buf[a-lo:])
	}
	return nil
}

// checkRange validates an access of length bytes at off.
func (o *Overlay) checkRange(off, length int64) error {
	if off < 0 || length < 0 || off > o.size || length > o.size-off {
		return fmt.Errorf("overlay: %d bytes at offset %d on a %d-byte disk: %w", length, off, o.size, disk.ErrOutOfRange)
	}
	return nil
}

// WriteAt writes into the overlay; the source is never written. A write
// that does not fit within Size fails with disk.ErrOutOfRange and writes
// nothing. It is durable once Flush returns.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if err := o.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	bs := int64(o.bs)
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		v, a := pos/bs, int(pos%bs)
		chunk := min(len(p)-n, o.bs-a)
		if err := o.writeBlock(v, a, chunk, p[n:n+chunk]); err != nil {
			return n, err
		}
		n += chunk
	}
	return n, nil
}

// Trim discards a range; it reads back as zeros and never again from the
// source. Whole blocks become zero extents, partial ones are written with
// zeros.
func (o *Overlay) Trim(off, length int64) error { return o.Zero(off, length) }

// Zero makes a range read as zeros, recorded like Trim.
func (o *Overlay) Zero(off, length int64) error {
	if err := o.checkRange(off, length); err != nil {
		return err
	}
	bs := int64(o.bs)
	for done := int64(0); done < length; {
		pos := off + done
		v, a := pos/bs, int(pos%bs)
		chunk := int(min(length-done, bs-int64(a)))
		var err error
		if a == 0 && chunk == o.blockLen(v) {
			err = o.zeroBlock(v)
		} else {
			err = o.writeBlock(v, a, chunk, nil)
		}
		if err != nil {
			return err
		}
		done += int64(chunk)
	}
	return nil
}

// zeroBlock records block v as zero.
func (o *Overlay) zeroBlock(v int64) error {
	st := o.stripe(v)
	st.Lock()
	defer st.Unlock()
	o.gate.RLock()
	defer o.gate.RUnlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	old := o.bmap.get(v)
	if old == valueZero {
		return nil
	}
	o.bmap.set(v, valueZero)
	if old >= valueSlotBase {
		o.slots.release(int64(old - valueSlotBase))
	}
	o.dirty.Store(true)
	return nil
}

// writeBlock writes n bytes at offset a of block v: data, or zeros when data
// is nil. A block that only this uncommitted session wrote is updated in
// place; otherwise the new content goes to a fresh slot (copy-on-write
// within the overlay), merged with the old content for a partial write.
func (o *Overlay) writeBlock(v int64, a, n int, data []byte) error {
	st := o.stripe(v)
	st.Lock()
	defer st.Unlock()
	o.gate.RLock()
	defer o.gate.RUnlock()

	// The granules the write touches, and their checksums before it, to
	// verify what an unaligned in-place write keeps of them.
	lo := a &^ (sumSize - 1)
	hi := (a + n + sumSize - 1) &^ (sumSize - 1)
	var small sumsBuf
	old := small.get((hi - lo) / sumSize)
	o.mu.RLock()
	closed, val := o.closed, o.bmap.get(v)
	inPlace := val >= valueSlotBase && !o.slots.isPinned(int64(val-valueSlotBase))
	if inPlace {
		o.copySums(old, int64(val-valueSlotBase), lo/sumSize)
	}
	o.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if data == nil && val == valueZero {
		return nil
	}
	if inPlace {
		return o.writeInPlace(v, int64(val-valueSlotBase), a, n, data, old)
	}

	var block []byte
	if a == 0 && n == o.bs && data != nil {
		block = data // a whole block: nothing to merge
	} else {
		bp := o.bufs.Get().(*[]byte)
		defer o.bufs.Put(bp)
		block = *bp
		if err := o.oldContent(block, v, val); err != nil {
			return err
		}
		if data == nil {
			clear(block[a : a+n])
		} else {
			copy(block[a:], data)
		}
	}

	var small2 sumsBuf
	sums := small2.get(o.spb)
	sumGranules(sums, block)
	o.mu.Lock()
	s := o.slots.alloc()
	o.mu.Unlock()
	if _, err := o.f.WriteAt(block, o.slotOffset(s)); err != nil {
		o.mu.Lock()
		o.slots.release(s)
		o.mu.Unlock()
		return fmt.Errorf("overlay %s: writing slot %d: %w", o.path, s, err)
	}
	o.mu.Lock()
	o.setSums(s, 0, sums)
	o.bmap.set(v, uint32(s)+valueSlotBase)
	if val >= valueSlotBase {
		o.slots.release(int64(val - valueSlotBase))
	}
	o.mu.Unlock()
	o.dirty.Store(true)
	return nil
}

// oldContent fills block with block v's current content (value val), zero
// padded past the end of the disk.
func (o *Overlay) oldContent(block []byte, v int64, val uint32) error {
	switch {
	case val == valueUnmapped:
		l := o.blockLen(v)
		clear(block[l:])
		return o.readBase(block[:l], v*int64(o.bs))
	case val == valueZero:
		clear(block)
		return nil
	default:
		s := int64(val - valueSlotBase)
		var small sumsBuf
		want := small.get(o.spb)
		o.mu.RLock()
		o.copySums(want, s, 0)
		o.mu.RUnlock()
		return o.readSlot(block, v, s, 0, want)
	}
}

// Changes lists the changed ranges in order, merging adjacent ranges of the
// same kind.
func (o *Overlay) Changes() []Extent {
	o.mu.RLock()
	entries := o.bmap.entries()
	o.mu.RUnlock()
	return extentsOf(entries, o.bs, o.size)
}

func extentsOf(entries []mapEntry, bs int, size int64) []Extent {
	var out []Extent
	for _, e := range entries {
		off := int64(e.VBlock) * int64(bs)
		l := min(int64(bs), size-off)
		zero := e.Value == valueZero
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero && out[k].Offset+out[k].Length == off {
			out[k].Length += l
			continue
		}
		out = append(out, Extent{Offset: off, Length: l, Zero: zero})
	}
	return out
}

// SetMeta stores a durable key/value pair and commits it with a Flush, so it
// survives restarts together with the data written before it.
func (o *Overlay) SetMeta(key string, value []byte) error {
	if len(key) == 0 || len(key) > maxMetaKeyLen || len(value) > maxMetaValueLen {
		return fmt.Errorf("overlay: metadata key %q: key must be 1..%d bytes and value at most %d bytes", key, maxMetaKeyLen, maxMetaValueLen)
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	total := len(key) + len(value)
	for k, v := range o.meta {
		if k != key {
			total += len(k) + len(v)
		}
	}
	if _, ok := o.meta[key]; (!ok && len(o.meta) >= maxMetaEntries) || total > maxMetaTotal {
		o.mu.Unlock()
		return fmt.Errorf("overlay: metadata limited to %d keys and %d bytes", maxMetaEntries, maxMetaTotal)
	}
	o.meta[key] = append([]byte(nil), value...)
	o.mu.Unlock()
	o.dirty.Store(true)
	return o.Flush()
}

// Meta returns a copy of the value stored under key.
func (o *Overlay) Meta(key string) ([]byte, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	v, ok := o.meta[key]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), v...), true
}

// MultiConnSafe reports true: every client shares this one store, and a
// Flush commits every write completed before it, whoever issued it, which
// is what NBD's CAN_MULTI_CONN promises.
func (o *Overlay) MultiConnSafe() bool { return true }

// Discard releases the overlay without committing: every write since the
// last Flush (or since Open) is dropped, and the file keeps its last commit,
// as after a crash. A caller that fails half way through a change uses it
// so that nothing of the change becomes durable.
func (o *Overlay) Discard() error {
	o.flushMu.Lock()
	defer o.flushMu.Unlock()
	o.gate.Lock()
	o.mu.Lock()
	closed := o.closed
	o.closed = true
	o.mu.Unlock()
	o.gate.Unlock()
	if closed {
		return ErrClosed
	}
	return o.f.Close()
}

// Close flushes and releases the overlay; an ephemeral overlay's file is
// gone afterwards.
func (o *Overlay) Close() error {
	err := o.Flush()
	if errors.Is(err, ErrClosed) {
		return err
	}
	o.gate.Lock()
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.gate.Unlock()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	return err
}
