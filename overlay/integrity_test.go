package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
)

// flipper flips bits of an overlay file from outside the Overlay, through
// the page cache the Overlay reads, the way damage at rest shows up.
type flipper struct {
	t testing.TB
	f *os.File
}

func newFlipper(t testing.TB, path string) *flipper {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &flipper{t, f}
}

func (fl *flipper) flip(off int64, bit uint) {
	b := make([]byte, 1)
	if _, err := fl.f.ReadAt(b, off); err != nil {
		fl.t.Fatal(err)
	}
	b[0] ^= 1 << bit
	if _, err := fl.f.WriteAt(b, off); err != nil {
		fl.t.Fatal(err)
	}
}

// slotOf is the slot holding block v.
func slotOf(t testing.TB, o *Overlay, v int64) int64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	val := o.bmap.get(v)
	if val < valueSlotBase {
		t.Fatalf("block %d holds no data slot", v)
	}
	return int64(val - valueSlotBase)
}

// checkDataError asserts that err reports a checksum mismatch of block v in
// slot s at the granule holding file byte off.
func checkDataError(t testing.TB, err error, v, s, off int64) {
	t.Helper()
	var de *DataError
	if !errors.As(err, &de) || !errors.Is(err, ErrDataChecksum) {
		t.Fatalf("flipped bit at file byte %d: read error %v, want a DataError", off, err)
	}
	if de.Block != v || de.Slot != s || de.FileOffset != off&^(sumSize-1) || de.Path == "" {
		t.Fatalf("DataError %+v, want block %d slot %d granule at file byte %d", de, v, s, off&^(sumSize-1))
	}
}

// TestEveryFlippedDataBitIsAnError flips, one at a time, every bit of a
// stored block (reading back pieces of the granule around it, aligned and
// not), and a random sample of bits of other blocks (reading the whole
// disk): each read must fail with a DataError naming the block, and no
// read may return the damaged bytes.
func TestEveryFlippedDataBitIsAnError(t *testing.T) {
	size := int64(12*testBS + 3000) // the last block is short
	_, src, data := newSource(t, size, 20)
	path := filepath.Join(t.TempDir(), "ov")
	var reported []*DataError
	o := mustOpen(t, path, src, Options{OnDataError: func(de *DataError) { reported = append(reported, de) }})
	defer o.Close()
	model := bytes.Clone(data)
	write := func(off int64, n int, seed uint64) {
		p := make([]byte, n)
		fillRandom(p, seed)
		if _, err := o.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	write(0, testBS, 1)                                 // whole block: a new slot
	write(3*testBS+100, 5000, 2)                        // partial: merged with the source
	write(3*testBS+9000, 300, 3)                        // in place, unaligned
	write(7*testBS, 2*testBS, 4)                        // two whole blocks
	write(12*testBS+10, 2000, 5)                        // the short last block
	if err := o.Zero(9*testBS+4096, 8192); err != nil { // in place... of a source block: merged
		t.Fatal(err)
	}
	clear(model[9*testBS+4096 : 9*testBS+4096+8192])
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	write(7*testBS+4096, 4096, 6) // a committed block: copy-on-write
	checkContent(t, o, model, "before damage")
	fl := newFlipper(t, path)

	// Every bit of block 0.
	s0 := slotOf(t, o, 0)
	p := make([]byte, sumSize)
	bits := 0
	for byteOff := int64(0); byteOff < testBS; byteOff++ {
		for bit := range uint(8) {
			off := o.slotOffset(s0) + byteOff
			fl.flip(off, bit)
			// Alternate an aligned granule read and a small unaligned
			// one that does not itself cover the flipped byte.
			g := byteOff &^ (sumSize - 1)
			var err error
			if bit%2 == 0 {
				_, err = o.ReadAt(p, g)
			} else {
				at := g + (byteOff-g+2048)%sumSize
				_, err = o.ReadAt(p[:1], at)
			}
			checkDataError(t, err, 0, s0, off)
			fl.flip(off, bit)
			bits++
		}
	}

	// A sample of bits across the other stored blocks, read whole.
	blocks := []int64{3, 7, 8, 9, 12}
	r := rand.New(rand.NewPCG(3, 4))
	whole := make([]byte, size)
	deadline := time.Now().Add(2 * time.Second)
	sampled := 0
	for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
		v := blocks[r.IntN(len(blocks))]
		s := slotOf(t, o, v)
		byteOff := r.Int64N(int64(o.blockLen(v)))
		off := o.slotOffset(s) + byteOff
		bit := uint(r.IntN(8))
		fl.flip(off, bit)
		n, err := o.ReadAt(whole, 0)
		checkDataError(t, err, v, s, off)
		if int64(n) > v*testBS {
			t.Fatalf("read returned %d bytes, past the damaged block %d", n, v)
		}
		fl.flip(off, bit)
		sampled++
	}
	checkContent(t, o, model, "after every flip was undone")
	// OnDataError heard of each damaged block once, however often read.
	seen := map[int64]bool{}
	for _, de := range reported {
		if seen[de.Block] {
			t.Errorf("OnDataError reported block %d twice", de.Block)
		}
		seen[de.Block] = true
	}
	if !seen[0] || len(seen) < 2 {
		t.Errorf("OnDataError reported blocks %v; want block 0 and the sampled ones", seen)
	}
	t.Logf("%d bits of block 0 and %d sampled bits of blocks %v all reported", bits, sampled, blocks)
}

// A partial write into a damaged granule must not give the damage a valid
// checksum: it fails, and so do later reads.
func TestPartialWriteKeepsDamageVisible(t *testing.T) {
	_, src, _ := newSource(t, 4*testBS, 21)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	defer o.Close()
	if _, err := o.WriteAt(make([]byte, testBS), testBS); err != nil {
		t.Fatal(err)
	}
	s := slotOf(t, o, 1)
	fl := newFlipper(t, path)
	off := o.slotOffset(s) + 100
	fl.flip(off, 3)
	if _, err := o.WriteAt([]byte("abc"), testBS+200); err == nil { // same granule, unflushed: in place
		t.Fatal("a write merging a damaged granule succeeded")
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("abc"), testBS+200); err == nil { // committed: copy-on-write
		t.Fatal("a copy-on-write of a damaged block succeeded")
	}
	_, err := o.ReadAt(make([]byte, 10), testBS+90)
	checkDataError(t, err, 1, s, off)
	// A write of the whole block replaces the damage.
	if _, err := o.WriteAt(bytes.Repeat([]byte{9}, testBS), testBS); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, testBS)
	if _, err := o.ReadAt(got, testBS); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{9}, testBS)) {
		t.Fatalf("block rewritten whole: %v", err)
	}
}

// Discard drops what was written since the last Flush and commits nothing.
func TestDiscardDropsUncommitted(t *testing.T) {
	_, src, data := newSource(t, 4*testBS, 22)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	model := bytes.Clone(data)
	if _, err := o.WriteAt(bytes.Repeat([]byte{1}, 100), 10); err != nil {
		t.Fatal(err)
	}
	copy(model[10:], bytes.Repeat([]byte{1}, 100))
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	gen := o.gen
	if _, err := o.WriteAt(bytes.Repeat([]byte{2}, 3*testBS), 50); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(3*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	if err := o.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := o.Discard(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Discard: %v, want ErrClosed", err)
	}
	in, err := ReadInfo(path)
	if err != nil || in.Generation != gen {
		t.Fatalf("after Discard: %v, generation %v, want %d", err, in, gen)
	}
	o = mustOpen(t, path, src, Options{})
	defer o.Close()
	checkContent(t, o, model, "after Discard")
}

// A version 1 overlay (before checksums) is refused by its version, while
// a version field damaged to 1 is a checksum failure.
func TestVersion1Refused(t *testing.T) {
	_, src, _ := newSource(t, 2*testBS, 23)
	path := filepath.Join(t.TempDir(), "ov")
	o := mustOpen(t, path, src, Options{})
	o.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A version 1 header: the same fields up to DataOffset, version 1,
	// then its CRC.
	h := make([]byte, v1HeaderSize)
	if _, err := f.ReadAt(h, 0); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(h[hdrVersionOff:], 1)
	binary.LittleEndian.PutUint32(h[v1HeaderCRCOff:], crc32.Checksum(h[:v1HeaderCRCOff], crcTable))
	if _, err := f.WriteAt(h, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, err := range []error{
		func() error { _, err := Open(path, src, Options{}); return err }(),
		func() error { _, err := ReadInfo(path); return err }(),
	} {
		if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "version 1") {
			t.Fatalf("version 1 overlay: %v, want ErrUnsupportedVersion naming version 1", err)
		}
	}
	o = mustOpen(t, filepath.Join(t.TempDir(), "ov2"), src, Options{})
	p2 := o.Path()
	o.Close()
	f, err = os.OpenFile(p2, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{1}, hdrVersionOff)
	f.Close()
	if _, err := ReadInfo(p2); !errors.Is(err, ErrChecksum) {
		t.Fatalf("version field damaged to 1: %v, want ErrChecksum", err)
	}
}

// Options.FullHash records the whole source's sha256 and checks it on
// Open: a change outside the sampled regions is caught only this way.
func TestFullHash(t *testing.T) {
	size := int64(64 * testBS) // 4 MiB: byte 2 MiB+100 is in no sample
	_, src, data := newSource(t, size, 24)
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	o := mustOpen(t, full, src, Options{FullHash: true})
	o.Close()
	plain := filepath.Join(dir, "plain")
	o = mustOpen(t, plain, src, Options{})
	o.Close()
	in, err := ReadInfo(full)
	if err != nil || len(in.SourceSHA256) != 64 || in.SampledBytes >= size {
		t.Fatalf("ReadInfo: %v %+v", err, in)
	}
	o = mustOpen(t, full, src, Options{FullHash: true})
	o.Close()
	if _, err := Open(plain, src, Options{FullHash: true}); err == nil || !strings.Contains(err.Error(), "no full sha256") {
		t.Fatalf("FullHash on an overlay created without it: %v", err)
	}
	changed := bytes.Clone(data)
	changed[2<<20+100] ^= 1
	other := filepath.Join(dir, "changed.img")
	if err := os.WriteFile(other, changed, 0o444); err != nil {
		t.Fatal(err)
	}
	osrc, err := disk.OpenSource(other)
	if err != nil {
		t.Fatal(err)
	}
	defer osrc.Close()
	o = mustOpen(t, full, osrc, Options{}) // the samples cannot tell
	o.Close()
	if _, err := Open(full, osrc, Options{FullHash: true}); !errors.Is(err, ErrSourceMismatch) {
		t.Fatalf("FullHash with a source changed outside the samples: %v, want ErrSourceMismatch", err)
	}
	c, err := CheckSource(full, osrc)
	if err != nil || c.Matches() || !c.SampleMatches || !c.FullChecked || c.FullMatches {
		t.Fatalf("CheckSource of the changed image: %+v %v", c, err)
	}
}

// A commit torn by a crash while it wrote its root leaves one copy of the
// older location garbage and the other the older generation: Open serves
// the newest intact commit after verifying every block of it, and refuses
// if a block fails.
func TestTornRootWriteVerifiesBlocks(t *testing.T) {
	path, o, model := multiCommitOverlay(t, 12*testBS, 25)
	src := o.base
	gen := o.gen
	s0 := slotOf(t, o, 0)
	soff := o.slotOffset(s0)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	fl := newFlipper(t, path)
	// The commit after gen would write gen+1 at rootOffset(gen+1): its
	// first copy torn.
	junk := bytes.Repeat([]byte{0x33}, rootSize)
	if _, err := fl.f.WriteAt(junk, rootOffset(gen+1)); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, path, src, Options{})
	checkContent(t, o, model, "after a torn root write")
	o.Discard()
	fl.flip(soff+77, 0)
	_, err := Open(path, src, Options{})
	var de *DataError
	if !errors.As(err, &de) || de.Block != 0 {
		t.Fatalf("torn root and a damaged block of the newest commit: %v; want a DataError for block 0", err)
	}
}
