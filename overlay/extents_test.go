package overlay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

const holeZero = disk.ExtentHole | disk.ExtentZero

// sparseSourceRuns are the data runs of the sparse test source, chosen to
// start and end inside blocks and to leave whole blocks of hole.
func sparseSourceRuns(size int64) [][2]int64 {
	return [][2]int64{
		{100, 5000}, {3*testBS + 4096, 3 * testBS}, {10*testBS - 1, 2},
		{14 * testBS, 5 * testBS}, {size - 1500, 1500},
	}
}

// newSparseSource writes a size-byte source that is a hole except for
// non-zero data at runs, opens it read-only and checks at cleanup that it
// never changed.
func newSparseSource(t testing.TB, size int64, runs [][2]int64) (string, *disk.Source, []byte) {
	t.Helper()
	data := make([]byte, size)
	path := filepath.Join(t.TempDir(), "sparse.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, r := range runs {
		b := data[r[0] : r[0]+r[1]]
		fillRandom(b, uint64(i))
		for j := range b {
			b[j] |= 1
		}
		if _, err := f.WriteAt(b, r[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := testutil.FileSHA256(t, path)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		src.Close()
		if got := testutil.FileSHA256(t, path); got != want {
			t.Errorf("source image changed: sha256 %s, want %s", got, want)
		}
	})
	return path, src, data
}

// qemuImgMap is the allocation map `qemu-img map` reports for a raw file,
// merged, from 0 to size.
func qemuImgMap(t testing.TB, path string, size int64) []disk.Extent {
	t.Helper()
	entries := testutil.QemuImgMap(t, path)
	var l extentList
	pos := int64(0)
	for _, e := range entries {
		if e.Start != pos || e.Length <= 0 {
			t.Fatalf("qemu-img map: entry %+v, want one at %d\n%+v", e, pos, entries)
		}
		var flags disk.ExtentFlags
		if !e.Data {
			flags = disk.ExtentHole
			if e.Zero {
				flags |= disk.ExtentZero
			}
		}
		if n := min(e.Length, size-pos); n > 0 {
			l.add(n, flags)
		}
		pos += e.Length
	}
	if pos < size {
		t.Fatalf("qemu-img map covers %d of %d bytes\n%+v", pos, size, entries)
	}
	return l
}

// mapSlice is the part of merged map m covering [lo, hi), appended to l.
func mapSlice(l *extentList, m []disk.Extent, lo, hi int64) {
	pos := int64(0)
	for _, e := range m {
		a, b := max(lo, pos), min(hi, pos+e.Length)
		if a < b {
			l.add(b-a, e.Flags)
		}
		pos += e.Length
	}
}

// extModel predicts an overlay's extents from the block states that its
// writes, zeroes and trims must produce, and the source's qemu-img map.
type extModel struct {
	size  int64
	src   []disk.Extent
	state []blockState
}

func newExtModel(size int64, src []disk.Extent) *extModel {
	return &extModel{size: size, src: src, state: make([]blockState, blockCount(size, testBS))}
}

func (m *extModel) blockEnd(v int64) int64 { return min((v+1)*testBS, m.size) }

func (m *extModel) write(off, n int64) {
	for v := off / testBS; v*testBS < off+n; v++ {
		m.state[v] = stateData
	}
}

// zero follows Zero's rule: a block covered whole becomes a zero extent; a
// partly covered one is rewritten with zeros unless it already is one.
func (m *extModel) zero(off, n int64) {
	for v := off / testBS; v*testBS < off+n; v++ {
		switch {
		case off <= v*testBS && off+n >= m.blockEnd(v):
			m.state[v] = stateZero
		case m.state[v] != stateZero:
			m.state[v] = stateData
		}
	}
}

func (m *extModel) fullMap() []disk.Extent {
	var l extentList
	for v, s := range m.state {
		lo, hi := int64(v)*testBS, m.blockEnd(int64(v))
		switch s {
		case stateData:
			l.add(hi-lo, 0)
		case stateZero:
			l.add(hi-lo, holeZero)
		default:
			mapSlice(&l, m.src, lo, hi)
		}
	}
	return l
}

// checkQuery asks o for [off, off+length) and checks the answer against the
// contract, against the model's map, for covering the whole query (this
// implementation stops early only at maxExtents), and that its zero
// extents read as zeros.
func checkQuery(t testing.TB, o *Overlay, want []disk.Extent, off, length int64) {
	t.Helper()
	got, err := o.Extents(off, length)
	if err != nil {
		t.Fatalf("Extents(%d, %d): %v", off, length, err)
	}
	if err := disk.CheckExtents(got, off, length, o.Size()); err != nil {
		t.Fatalf("Extents(%d, %d) = %v: %v", off, length, got, err)
	}
	var w extentList
	mapSlice(&w, want, off, o.Size())
	pos := off
	for i, e := range got {
		last := i == len(got)-1
		if i >= len(w) || e.Flags != w[i].Flags || e.Length > w[i].Length || (!last && e.Length != w[i].Length) {
			t.Fatalf("Extents(%d, %d) = %v, want a prefix of %v", off, length, got, w)
		}
		if e.Flags&disk.ExtentZero != 0 {
			checkZeros(t, o, pos, min(e.Length, 1<<20))
		}
		pos += e.Length
	}
	if len(got) < maxExtents && pos < off+length {
		t.Fatalf("Extents(%d, %d) = %v stops at %d", off, length, got, pos)
	}
}

func checkZeros(t testing.TB, o *Overlay, off, n int64) {
	t.Helper()
	b := make([]byte, n)
	if r, err := o.ReadAt(b, off); r != len(b) {
		t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, r, err)
	}
	if i := slices.IndexFunc(b, func(c byte) bool { return c != 0 }); i >= 0 {
		t.Fatalf("byte %d is %#x but lies in an extent flagged zero", off+int64(i), b[i])
	}
}

// queryAll walks the whole disk with Extents and merges the answers.
func queryAll(t testing.TB, o *Overlay) []disk.Extent {
	t.Helper()
	var l extentList
	for off := int64(0); off < o.Size(); {
		exts, err := o.Extents(off, o.Size()-off)
		if err != nil {
			t.Fatal(err)
		}
		if err := disk.CheckExtents(exts, off, o.Size()-off, o.Size()); err != nil {
			t.Fatal(err)
		}
		for _, e := range exts {
			l.add(e.Length, e.Flags)
			off += e.Length
		}
	}
	return l
}

func randomQuery(r *rand.Rand, size int64) (int64, int64) {
	off := r.Int64N(size)
	if r.IntN(3) == 0 {
		off -= off % testBS
	}
	n := 1 + r.Int64N(size-off)
	if r.IntN(2) == 0 {
		n = min(n, 1+r.Int64N(2*testBS))
	}
	return off, n
}

// TestExtentsMatchModel applies random writes, zeroes, trims, flushes,
// reopens and crashes to an overlay over a sparse source and checks after
// every step that random queries agree with the model built from the
// operations and the source's qemu-img map.
func TestExtentsMatchModel(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			size := int64(24*testBS + 3000)
			srcPath, src, _ := newSparseSource(t, size, sparseSourceRuns(size))
			m := newExtModel(size, qemuImgMap(t, srcPath, size))
			flushed := slices.Clone(m.state)
			path := filepath.Join(t.TempDir(), "ov")
			o := mustOpen(t, path, src, Options{})
			defer func() { o.Close() }()
			r := rand.New(rand.NewPCG(seed, 7))
			for i := range 300 {
				off, n := randomQuery(r, size)
				switch k := r.IntN(20); {
				case k < 8:
					p := make([]byte, n)
					fillRandom(p, r.Uint64())
					if _, err := o.WriteAt(p, off); err != nil {
						t.Fatalf("op %d: WriteAt: %v", i, err)
					}
					m.write(off, n)
				case k < 14:
					var err error
					if k < 11 {
						err = o.Zero(off, n)
					} else {
						err = o.Trim(off, n)
					}
					if err != nil {
						t.Fatalf("op %d: Zero/Trim: %v", i, err)
					}
					m.zero(off, n)
				case k < 16:
					if err := o.Flush(); err != nil {
						t.Fatal(err)
					}
					copy(flushed, m.state)
				case k < 18:
					if err := o.Close(); err != nil {
						t.Fatal(err)
					}
					copy(flushed, m.state)
					o = mustOpen(t, path, src, Options{})
				default:
					abandon(o)
					copy(m.state, flushed)
					o = mustOpen(t, path, src, Options{})
				}
				want := m.fullMap()
				for range 4 {
					off, n := randomQuery(r, size)
					checkQuery(t, o, want, off, n)
				}
				if i%50 == 0 {
					if got := queryAll(t, o); !slices.Equal(got, want) {
						t.Fatalf("op %d: whole-disk extents %v, want %v", i, got, want)
					}
				}
			}
		})
	}
}

// TestExtentsUnchangedMatchQemuImgMap checks that an overlay passes its
// source's allocation through exactly as qemu-img map sees the file, and
// keeps doing so outside the blocks it changes.
func TestExtentsUnchangedMatchQemuImgMap(t *testing.T) {
	size := int64(24*testBS + 3000)
	srcPath, src, _ := newSparseSource(t, size, sparseSourceRuns(size))
	qm := qemuImgMap(t, srcPath, size)
	o := mustOpen(t, "", src, Options{Ephemeral: true})
	defer o.Close()
	if got := queryAll(t, o); !slices.Equal(got, qm) {
		t.Fatalf("unchanged overlay: extents %v, qemu-img map of the source %v", got, qm)
	}
	// Change blocks 1 (a source hole) and 4 (source data), then compare
	// every other block with qemu-img's view of the source.
	if _, err := o.WriteAt([]byte{0xaa}, testBS+7); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(4*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	got := queryAll(t, o)
	for v := int64(0); v < blockCount(size, testBS); v++ {
		lo, hi := v*testBS, min((v+1)*testBS, size)
		var g, w extentList
		mapSlice(&g, got, lo, hi)
		switch v {
		case 1:
			w = extentList{{Length: hi - lo}}
		case 4:
			w = extentList{{Length: hi - lo, Flags: holeZero}}
		default:
			mapSlice(&w, qm, lo, hi)
		}
		if !slices.Equal(g, w) {
			t.Errorf("block %d: extents %v, want %v", v, g, w)
		}
	}
}

// plainReader hides a source's Extents, as a base that cannot report
// allocation would.
type plainReader struct{ disk.Reader }

func TestExtentsBaseWithoutExtenterIsData(t *testing.T) {
	size := int64(8*testBS + 100)
	_, src, _ := newSparseSource(t, size, nil)
	o := mustOpen(t, "", plainReader{src}, Options{Ephemeral: true})
	defer o.Close()
	if err := o.Zero(2*testBS, 2*testBS); err != nil {
		t.Fatal(err)
	}
	want := []disk.Extent{{Length: 2 * testBS}, {Length: 2 * testBS, Flags: holeZero}, {Length: size - 4*testBS}}
	if got := queryAll(t, o); !slices.Equal(got, want) {
		t.Fatalf("extents %v, want %v", got, want)
	}
}

// lyingBase answers Extents with an extent of zero length, which would make
// a trusting caller loop forever.
type lyingBase struct{ disk.Reader }

func (lyingBase) Extents(off, length int64) ([]disk.Extent, error) {
	return []disk.Extent{{Length: 0}}, nil
}

func TestExtentsBadBaseAnswerIsError(t *testing.T) {
	_, src, _ := newSparseSource(t, 4*testBS, nil)
	o := mustOpen(t, "", lyingBase{src}, Options{Ephemeral: true})
	defer o.Close()
	if _, err := o.Extents(0, 4*testBS); err == nil {
		t.Fatal("a zero-length extent from the base was accepted")
	}
}

func TestExtentsBadRangeAndClosed(t *testing.T) {
	size := int64(4*testBS + 10)
	_, src, _ := newSparseSource(t, size, nil)
	o := mustOpen(t, "", src, Options{Ephemeral: true})
	for _, q := range [][2]int64{{-1, 1}, {0, 0}, {0, -1}, {size, 1}, {0, size + 1}, {1, 1<<63 - 1}} {
		if _, err := o.Extents(q[0], q[1]); !errors.Is(err, disk.ErrOutOfRange) {
			t.Errorf("Extents(%d, %d) = %v, want ErrOutOfRange", q[0], q[1], err)
		}
	}
	// The final partial block ends exactly at Size.
	if err := o.Zero(4*testBS, 10); err != nil {
		t.Fatal(err)
	}
	got, err := o.Extents(size-1, 1)
	if want := []disk.Extent{{Length: 1, Flags: holeZero}}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Extents(last byte) = %v, %v, want %v", got, err, want)
	}
	o.Close()
	if _, err := o.Extents(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Extents after Close = %v, want ErrClosed", err)
	}
}

// TestExtentsBounded checks that a map alternating between zero extents
// and unchanged blocks of a base without allocation information is answered
// in bounded pieces that cover the disk.
func TestExtentsBounded(t *testing.T) {
	nblocks := int64(maxExtents + 100)
	size := nblocks * testBS
	_, src, _ := newSparseSource(t, size, nil)
	o := mustOpen(t, "", plainReader{src}, Options{Ephemeral: true})
	defer o.Close()
	m := newExtModel(size, []disk.Extent{{Length: size}})
	for v := int64(0); v < nblocks; v += 2 {
		if err := o.Zero(v*testBS, testBS); err != nil {
			t.Fatal(err)
		}
		m.zero(v*testBS, testBS)
	}
	first, err := o.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != maxExtents {
		t.Fatalf("first answer has %d extents, want the bound %d", len(first), maxExtents)
	}
	if got, want := queryAll(t, o), m.fullMap(); !slices.Equal(got, want) {
		t.Fatalf("bounded answers merge to %d extents, want %d", len(got), len(want))
	}
}

// TestExtentsConcurrentWithWrites queries while other goroutines write and
// zero; every answer must still keep the contract (run with -race).
func TestExtentsConcurrentWithWrites(t *testing.T) {
	size := int64(24*testBS + 3000)
	_, src, _ := newSparseSource(t, size, sparseSourceRuns(size))
	o := mustOpen(t, "", src, Options{Ephemeral: true})
	defer o.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 200 {
				off, n := randomQuery(r, size)
				var err error
				switch {
				case g%2 == 1:
					var exts []disk.Extent
					if exts, err = o.Extents(off, n); err == nil {
						err = disk.CheckExtents(exts, off, n, size)
					}
				case r.IntN(2) == 0:
					_, err = o.WriteAt(make([]byte, min(n, 3*testBS)), off-off%testBS)
				default:
					err = o.Zero(off, n)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// FuzzExtents drives random writes, zeroes and queries over a small overlay
// on a sparse source; every answer must keep the contract, agree with the
// model, and read as zeros where it says so.
func FuzzExtents(f *testing.F) {
	size := int64(9*testBS + 777)
	srcPath, src, _ := newSparseSource(f, size, [][2]int64{{10, 70000}, {5*testBS + 3, 9000}, {size - 7, 7}})
	srcMap := qemuImgMap(f, srcPath, size)
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add([]byte{1, 0, 0, 0, 9, 2, 3, 0, 0, 200, 1, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, ops []byte) {
		o := mustOpen(t, "", src, Options{Ephemeral: true})
		defer o.Close()
		m := newExtModel(size, srcMap)
		// Each op is a kind byte, a 3-byte offset and a 3-byte length, both
		// scaled onto the disk so that block edges are hit often.
		for len(ops) >= 7 && len(m.state) > 0 {
			kind := ops[0] % 4
			off := scaled(ops[1:4], size-1)
			n := 1 + scaled(ops[4:7], size-off-1)
			ops = ops[7:]
			switch kind {
			case 0:
				if _, err := o.WriteAt(make([]byte, n), off); err != nil {
					t.Fatal(err)
				}
				m.write(off, n)
			case 1:
				if err := o.Zero(off, n); err != nil {
					t.Fatal(err)
				}
				m.zero(off, n)
			default:
				checkQuery(t, o, m.fullMap(), off, n)
			}
		}
		checkQuery(t, o, m.fullMap(), 0, size)
	})
}

// scaled maps three bytes onto [0, limit], snapping to a block edge, one
// byte either side of it, or anywhere.
func scaled(b []byte, limit int64) int64 {
	v := int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16
	x := v * (limit + 1) >> 24
	switch b[0] % 4 {
	case 0:
		x -= x % testBS
	case 1:
		x = x - x%testBS + testBS - 1
	}
	return max(0, min(x, limit))
}
