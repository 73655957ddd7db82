package disk

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// run is a byte range written with data when a test builds a sparse file.
type run struct{ off, length int64 }

// sparseFile creates a size-byte file in dir that is a hole except for
// random data at the given runs.
func sparseFile(t *testing.T, dir string, size int64, runs []run) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "sparse-*.img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for _, w := range runs {
		b := make([]byte, w.length)
		for i := range b {
			b[i] = byte(r.Uint32() | 1) // never zero, so data is never mistaken for a hole
		}
		if _, err := f.WriteAt(b, w.off); err != nil {
			t.Fatal(err)
		}
	}
	return f.Name()
}

// shmDir is a temporary directory on tmpfs, whose hole granularity and
// SEEK_DATA implementation differ from disk file systems'.
func shmDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "kvmify-extents-")
	if err != nil {
		t.Skipf("no tmpfs at /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// qemuMap is the allocation map `qemu-img map` reports for a raw file, as
// merged extents from 0 to size.
func qemuMap(t *testing.T, path string, size int64) []Extent {
	t.Helper()
	entries := testutil.QemuImgMap(t, path)
	var l extentList
	pos := int64(0)
	for _, e := range entries {
		if e.Start != pos {
			t.Fatalf("qemu-img map: entry at %d, want %d\n%+v", e.Start, pos, entries)
		}
		var flags ExtentFlags
		if !e.Data {
			flags = ExtentHole
			if e.Zero {
				flags |= ExtentZero
			}
		}
		// qemu rounds an odd-sized raw file up to whole sectors.
		l.add(min(e.Length, size-pos), flags)
		pos += e.Length
	}
	if pos < size {
		t.Fatalf("qemu-img map covers %d of %d bytes\n%+v", pos, size, entries)
	}
	return l
}

// fullMap asks e for the whole disk, checking every answer against the
// contract, and merges the answers.
func fullMap(t *testing.T, e Extenter, size int64) []Extent {
	t.Helper()
	var l extentList
	for off := int64(0); off < size; {
		exts, err := e.Extents(off, size-off)
		if err != nil {
			t.Fatalf("Extents(%d, %d): %v", off, size-off, err)
		}
		if err := CheckExtents(exts, off, size-off, size); err != nil {
			t.Fatalf("Extents(%d, %d) = %v: %v", off, size-off, exts, err)
		}
		for _, x := range exts {
			l.add(x.Length, x.Flags)
			off += x.Length
		}
	}
	return l
}

// from returns the part of a merged map that starts at off.
func from(m []Extent, off int64) []Extent {
	pos := int64(0)
	for i, e := range m {
		if off < pos+e.Length {
			out := append([]Extent{{Length: pos + e.Length - off, Flags: e.Flags}}, m[i+1:]...)
			return out
		}
		pos += e.Length
	}
	return nil
}

// checkAgainst checks that exts, an answer for a query at off, is a prefix of
// the merged map m from off on (the last extent may stop short).
func checkAgainst(t *testing.T, exts, m []Extent, off int64) {
	t.Helper()
	want := from(m, off)
	if len(exts) > len(want) {
		t.Fatalf("Extents at %d = %v, want a prefix of %v", off, exts, want)
	}
	for i, e := range exts {
		last := i == len(exts)-1
		if e.Flags != want[i].Flags || e.Length > want[i].Length || (!last && e.Length != want[i].Length) {
			t.Fatalf("Extents at %d: extent %d is %+v, want %+v (answer %v)", off, i, e, want[i], exts)
		}
	}
}

// checkBytes checks that every hole reads as zeros and that every non-zero
// byte lies in a data extent.
func checkBytes(t *testing.T, s *Source, m []Extent) {
	t.Helper()
	buf := make([]byte, s.Size())
	if n, err := s.ReadAt(buf, 0); n != len(buf) {
		t.Fatalf("ReadAt: %d bytes, %v", n, err)
	}
	pos := int64(0)
	for _, e := range m {
		if e.Flags&ExtentZero != 0 {
			if i := bytes.IndexFunc(buf[pos:pos+e.Length], func(r rune) bool { return r != 0 }); i >= 0 {
				t.Fatalf("extent at %d flagged zero, but byte %d is not", pos, pos+int64(i))
			}
		}
		pos += e.Length
	}
}

func openSource(t *testing.T, path string) *Source {
	t.Helper()
	s, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const mib = 1 << 20

var sparseCases = []struct {
	name string
	size int64
	runs []run
}{
	{"all-hole", 8 * mib, nil},
	{"all-data", 1 * mib, []run{{0, mib}}},
	{"data-then-hole", 4 * mib, []run{{0, 64 << 10}}},
	{"hole-then-data", 4 * mib, []run{{4*mib - 8192, 8192}}},
	{"scattered-unaligned", 16 * mib, []run{{4097, 10}, {mib + 123, 70000}, {3*mib - 1, 2}, {9 * mib, mib}, {16*mib - 5000, 5000}}},
	{"odd-size-tail-data", 3*mib + 1000, []run{{3*mib + 10, 990}}},
	{"odd-size-tail-hole", 3*mib + 1000, []run{{mib, 4096}}},
}

// TestSourceExtentsMatchQemuImgMap compares the source's extents with what
// qemu-img map reports for the same file, on tmpfs and on the file system
// that holds test temp dirs, and with the bytes.
func TestSourceExtentsMatchQemuImgMap(t *testing.T) {
	dirs := map[string]string{"tempdir": t.TempDir(), "tmpfs": shmDir(t)}
	for fsName, dir := range dirs {
		for _, c := range sparseCases {
			t.Run(fsName+"/"+c.name, func(t *testing.T) {
				path := sparseFile(t, dir, c.size, c.runs)
				s := openSource(t, path)
				got := fullMap(t, s, c.size)
				want := qemuMap(t, path, c.size)
				if !equalExtents(got, want) {
					t.Fatalf("Extents = %v\nqemu-img map = %v", got, want)
				}
				for _, w := range c.runs {
					if !isData(got, w.off, w.length) {
						t.Errorf("written run %d+%d is not entirely data in %v", w.off, w.length, got)
					}
				}
				checkBytes(t, s, got)
				checkRandomQueries(t, s, got, 200)
				checkSequentialChunks(t, openSource(t, path), want)
			})
		}
	}
}

// TestSourceExtentsMkimageMixed checks the benchmark harness's mixed image:
// its written zeros are allocated, so only its holes may be reported as such.
func TestSourceExtentsMkimageMixed(t *testing.T) {
	script := filepath.Join(testutil.RepoRoot(), "..", "shared", "bench", "mkimage.sh")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("benchmark harness not beside the checkout: %v", err)
	}
	testutil.RequireTool(t, "openssl")
	for fsName, dir := range map[string]string{"tempdir": t.TempDir(), "tmpfs": shmDir(t)} {
		t.Run(fsName, func(t *testing.T) {
			path := filepath.Join(dir, "mixed.img")
			if out, err := exec.Command("bash", script, path, "40M", "mixed").CombinedOutput(); err != nil {
				t.Fatalf("mkimage.sh: %v\n%s", err, out)
			}
			s := openSource(t, path)
			got := fullMap(t, s, s.Size())
			if want := qemuMap(t, path, s.Size()); !equalExtents(got, want) {
				t.Fatalf("Extents = %v\nqemu-img map = %v", got, want)
			}
			// 10 MiB data + 2 MiB written zeros, then a 4 MiB hole, repeated.
			for chunk := int64(0); chunk+16*mib <= s.Size(); chunk += 16 * mib {
				if !isData(got, chunk, 12*mib) || !isFlagged(got, chunk+12*mib, 4*mib, ExtentHole|ExtentZero) {
					t.Fatalf("chunk at %d does not have 12 MiB data then a 4 MiB hole: %v", chunk, got)
				}
			}
			checkBytes(t, s, got)
		})
	}
}

// TestSourceExtentsBounded checks that a file with more runs than one call
// reports is answered in several bounded calls that together agree with
// qemu-img map.
func TestSourceExtentsBounded(t *testing.T) {
	const runs = 3000 // each run makes a data and a hole extent
	var w []run
	for i := int64(0); i < runs; i++ {
		w = append(w, run{i * 8192, 4096})
	}
	size := int64(runs) * 8192
	path := sparseFile(t, t.TempDir(), size, w)
	s := openSource(t, path)
	first, err := s.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) > maxSourceExtents {
		t.Fatalf("one call gave %d extents, more than the bound %d", len(first), maxSourceExtents)
	}
	if len(first) < maxSourceExtents {
		t.Skipf("the file system merged the runs into %d extents; nothing to bound", len(first))
	}
	got := fullMap(t, s, size)
	if want := qemuMap(t, path, size); !equalExtents(got, want) {
		t.Fatalf("Extents differ from qemu-img map: %d vs %d extents", len(got), len(want))
	}
}

// TestSourceExtentsConcurrent runs queries and reads at once; each query's
// answer must still agree with the map, as lseek's shared offset is never
// relied on.
func TestSourceExtentsConcurrent(t *testing.T) {
	c := sparseCases[4]
	path := sparseFile(t, t.TempDir(), c.size, c.runs)
	s := openSource(t, path)
	m := fullMap(t, s, c.size)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 300 {
				off := r.Int64N(c.size)
				exts, err := s.Extents(off, c.size-off)
				if err == nil {
					err = CheckExtents(exts, off, c.size-off, c.size)
				}
				if err == nil && !equalExtents(exts, from(m, off)) {
					err = errors.New("concurrent answer differs from the map")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 2))
			buf := make([]byte, 8192)
			for range 300 {
				off := r.Int64N(c.size - int64(len(buf)))
				if _, err := s.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
					errs <- errors.New("concurrent read returned wrong bytes")
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

func TestSourceExtentsBadRange(t *testing.T) {
	s := openSource(t, sparseFile(t, t.TempDir(), mib, nil))
	for _, q := range []struct{ off, length int64 }{
		{-1, 10}, {0, 0}, {0, -5}, {mib, 1}, {0, mib + 1}, {mib - 1, 2}, {1, 1<<63 - 1},
	} {
		if _, err := s.Extents(q.off, q.length); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Extents(%d, %d) = %v, want ErrOutOfRange", q.off, q.length, err)
		}
	}
}

func TestCheckExtentsRejects(t *testing.T) {
	const size = 100
	for _, c := range []struct {
		name string
		exts []Extent
		off  int64
	}{
		{"empty", nil, 0},
		{"zero length", []Extent{{0, 0}}, 0},
		{"past size", []Extent{{101, 0}}, 0},
		{"past size from off", []Extent{{91, 0}}, 10},
		{"equal neighbours", []Extent{{10, ExtentZero}, {10, ExtentZero}}, 0},
		{"unknown flag", []Extent{{10, 4}}, 0},
	} {
		if err := CheckExtents(c.exts, c.off, 1, size); err == nil {
			t.Errorf("%s: CheckExtents(%v) accepted it", c.name, c.exts)
		}
	}
	if err := CheckExtents([]Extent{{5, 0}, {95, ExtentHole | ExtentZero}}, 0, 1, size); err != nil {
		t.Errorf("valid answer rejected: %v", err)
	}
}

// checkRandomQueries asks n random sub-ranges and checks each answer against
// the contract and the full map.
func checkRandomQueries(t *testing.T, e Extenter, m []Extent, n int) {
	t.Helper()
	var size int64
	for _, x := range m {
		size += x.Length
	}
	r := rand.New(rand.NewPCG(uint64(size), uint64(n)))
	for range n {
		off := r.Int64N(size)
		length := 1 + r.Int64N(size-off)
		exts, err := e.Extents(off, length)
		if err != nil {
			t.Fatalf("Extents(%d, %d): %v", off, length, err)
		}
		if err := CheckExtents(exts, off, length, size); err != nil {
			t.Fatalf("Extents(%d, %d) = %v: %v", off, length, exts, err)
		}
		checkAgainst(t, exts, m, off)
	}
}

func equalExtents(a, b []Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isFlagged reports whether [off, off+length) lies in extents of the map m
// that all have flags.
func isFlagged(m []Extent, off, length int64, flags ExtentFlags) bool {
	pos := int64(0)
	for _, e := range m {
		if pos < off+length && off < pos+e.Length && e.Flags != flags {
			return false
		}
		pos += e.Length
	}
	return true
}

func isData(m []Extent, off, length int64) bool { return isFlagged(m, off, length, 0) }

// TestSourceExtentsBlockDevice checks that a block device, whose holes lseek
// cannot report, is one data extent to its end, even over a sparse file.
func TestSourceExtentsBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("attaching a loop device needs root")
	}
	dev := loopDevice(t, sparseFile(t, t.TempDir(), 4*mib, []run{{mib, 4096}}))
	s := openSource(t, dev)
	if !s.IsBlockDevice() || s.Size() != 4*mib {
		t.Fatalf("%s: block device %v, size %d", dev, s.IsBlockDevice(), s.Size())
	}
	for _, off := range []int64{0, 12345, 4*mib - 1} {
		exts, err := s.Extents(off, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckExtents(exts, off, 1, s.Size()); err != nil {
			t.Fatal(err)
		}
		if want := []Extent{{Length: 4*mib - off}}; !equalExtents(exts, want) {
			t.Errorf("Extents(%d, 1) = %v, want %v", off, exts, want)
		}
	}
}

// checkSequentialChunks asks for the extents of one chunk after another, as
// nbdcopy does, which answers mostly from the run remembered from the
// chunk before; every answer must still agree with m.
func checkSequentialChunks(t *testing.T, s *Source, m []Extent) {
	t.Helper()
	const chunk = 48 << 10 // not a divisor of the runs' alignment
	for off := int64(0); off < s.Size(); off += chunk {
		n := min(chunk, s.Size()-off)
		exts, err := s.Extents(off, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckExtents(exts, off, n, s.Size()); err != nil {
			t.Fatal(err)
		}
		checkAgainst(t, exts, m, off)
	}
}

// loopDevice attaches path read-only to a free loop device for the test and
// returns the device; it skips when none can be attached.
func loopDevice(t *testing.T, path string) string {
	t.Helper()
	losetup := testutil.RequireTool(t, "losetup")
	out, err := exec.Command(losetup, "--find", "--show", "--read-only", path).Output()
	if err != nil {
		t.Skipf("no loop device available: %v", err)
	}
	dev := string(bytes.TrimSpace(out))
	t.Cleanup(func() { exec.Command(losetup, "--detach", dev).Run() })
	return dev
}
