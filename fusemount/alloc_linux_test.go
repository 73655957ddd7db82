//go:build linux

package fusemount_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fusemount"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

const (
	mib      = 1 << 20
	holeZero = disk.ExtentHole | disk.ExtentZero
)

// sparseFixture mounts an overlay over a sparse source in which some source
// holes were written and some source data was zeroed, so that disk.img has
// holes from both layers.
type sparseFixture struct {
	src, srcHash, img string
	ov                *overlay.Overlay
}

func newSparseFixture(t *testing.T) *sparseFixture {
	t.Helper()
	requireFUSE(t)
	tmp := t.TempDir()
	const size = 16 * mib
	src := filepath.Join(tmp, "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	r := rand.New(rand.NewPCG(1, 2))
	for _, w := range [][2]int64{{0, mib}, {5*mib + 4096, 200 << 10}, {12 * mib, 2 * mib}} {
		b := make([]byte, w[1])
		for i := range b {
			b[i] = byte(r.Uint32() | 1)
		}
		if _, err := f.WriteAt(b, w[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	hash := testutil.FileSHA256(t, src)
	s, err := disk.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ov, err := overlay.Open(filepath.Join(tmp, "ov"), s, overlay.Options{SourcePath: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ov.WriteAt(bytes.Repeat([]byte{7}, 100<<10), 8*mib); err != nil {
		t.Fatal(err)
	}
	if _, err := ov.WriteAt([]byte{9}, 15*mib+10); err != nil {
		t.Fatal(err)
	}
	if err := ov.Zero(12*mib, mib); err != nil {
		t.Fatal(err)
	}
	if err := ov.Trim(0, 64<<10); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "mnt")
	os.Mkdir(dir, 0o755)
	m, err := fusemount.New(dir, fusemount.Options{Disk: ov})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		ov.Close()
		if got := testutil.FileSHA256(t, src); got != hash {
			t.Errorf("source image changed: sha256 %s, want %s", got, hash)
		}
	})
	return &sparseFixture{src: src, srcHash: hash, img: filepath.Join(dir, "disk.img"), ov: ov}
}

// holeMap is the overlay's allocation as lseek sees it: runs that read as
// zeros are holes, the rest data.
func holeMap(t *testing.T, e disk.Extenter, size int64) []disk.Extent {
	t.Helper()
	var out []disk.Extent
	for off := int64(0); off < size; {
		exts, err := e.Extents(off, size-off)
		if err != nil {
			t.Fatal(err)
		}
		if err := disk.CheckExtents(exts, off, size-off, size); err != nil {
			t.Fatal(err)
		}
		for _, x := range exts {
			flags := disk.ExtentFlags(0)
			if x.Flags&disk.ExtentZero != 0 {
				flags = holeZero
			}
			out = addExtent(out, x.Length, flags)
			off += x.Length
		}
	}
	return out
}

func addExtent(l []disk.Extent, length int64, flags disk.ExtentFlags) []disk.Extent {
	if k := len(l) - 1; k >= 0 && l[k].Flags == flags {
		l[k].Length += length
		return l
	}
	return append(l, disk.Extent{Length: length, Flags: flags})
}

// qemuImgMap is what `qemu-img map` reports for a raw file, merged.
func qemuImgMap(t *testing.T, path string) []disk.Extent {
	t.Helper()
	var l []disk.Extent
	for _, e := range testutil.QemuImgMap(t, path) {
		flags := disk.ExtentFlags(0)
		if !e.Data {
			flags = disk.ExtentHole
			if e.Zero {
				flags |= disk.ExtentZero
			}
		}
		l = addExtent(l, e.Length, flags)
	}
	return l
}

// TestDiskImgHolesMatchExtents checks that qemu-img map, which finds holes
// with SEEK_DATA and SEEK_HOLE, sees in disk.img exactly the overlay's
// extents, and that st_blocks counts only what is allocated.
func TestDiskImgHolesMatchExtents(t *testing.T) {
	f := newSparseFixture(t)
	want := holeMap(t, f.ov, f.ov.Size())
	if len(want) < 6 {
		t.Fatalf("fixture too simple: %v", want)
	}
	if got := qemuImgMap(t, f.img); !slices.Equal(got, want) {
		t.Fatalf("qemu-img map of disk.img = %v\nthe overlay's extents = %v", got, want)
	}
	var holes int64
	for _, e := range want {
		if e.Flags != 0 {
			holes += e.Length
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(f.img, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := st.Blocks*512, f.ov.Size()-holes; got != want {
		t.Errorf("st_blocks covers %d bytes, want the %d bytes that are not holes", got, want)
	}
}

// TestDiskImgSeek checks lseek answers at many offsets against the extents,
// and the end-of-file cases.
func TestDiskImgSeek(t *testing.T) {
	f := newSparseFixture(t)
	size := f.ov.Size()
	m := holeMap(t, f.ov, size)
	fd, err := os.Open(f.img)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	// next finds where the run with the wanted holeness begins at or after off.
	next := func(off int64, hole bool) int64 {
		pos := int64(0)
		for _, e := range m {
			if end := pos + e.Length; end > off && (e.Flags != 0) == hole {
				return max(pos, off)
			}
			pos += e.Length
		}
		if hole {
			return size
		}
		return -1
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		off := r.Int64N(size)
		for _, c := range []struct {
			whence int
			hole   bool
		}{{unix.SEEK_DATA, false}, {unix.SEEK_HOLE, true}} {
			got, err := unix.Seek(int(fd.Fd()), off, c.whence)
			want := next(off, c.hole)
			if want < 0 {
				if !errors.Is(err, unix.ENXIO) {
					t.Fatalf("lseek(%d, whence %d) = %d, %v; want ENXIO", off, c.whence, got, err)
				}
				continue
			}
			if err != nil || got != want {
				t.Fatalf("lseek(%d, whence %d) = %d, %v; want %d", off, c.whence, got, err, want)
			}
		}
	}
	for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
		if _, err := unix.Seek(int(fd.Fd()), size, whence); !errors.Is(err, unix.ENXIO) {
			t.Errorf("lseek(size, whence %d) = %v, want ENXIO", whence, err)
		}
	}
}

// TestCpSparseCopiesHoles copies disk.img with cp --sparse=auto, which
// looks for holes only in files whose st_blocks is below their size, and
// then through lseek: the copy must have the same content and every hole.
func TestCpSparseCopiesHoles(t *testing.T) {
	f := newSparseFixture(t)
	cp := testutil.RequireTool(t, "cp")
	dst := filepath.Join(t.TempDir(), "copy.img")
	if out, err := exec.Command(cp, "--sparse=auto", f.img, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, f.ov.Size())
	if _, err := f.ov.ReadAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the copy's content differs from the overlay's")
	}
	// cp makes holes of the zero blocks inside data runs as well, so the
	// copy may have more holes, but it has every hole of disk.img. Without
	// the lseek answers (or with a full st_blocks) it would have none.
	copyMap := qemuImgMap(t, dst)
	pos := int64(0)
	for _, e := range holeMap(t, f.ov, f.ov.Size()) {
		if e.Flags != 0 && !allHole(copyMap, pos, e.Length) {
			t.Errorf("disk.img's hole %d+%d is not a hole in the copy: %v", pos, e.Length, copyMap)
		}
		pos += e.Length
	}
}

// allHole reports whether [off, off+length) lies in holes of map m.
func allHole(m []disk.Extent, off, length int64) bool {
	pos := int64(0)
	for _, e := range m {
		if pos < off+length && off < pos+e.Length && e.Flags != holeZero {
			return false
		}
		pos += e.Length
	}
	return true
}

// TestSeekWithoutExtents checks a disk that cannot report extents: all data.
func TestSeekWithoutExtents(t *testing.T) {
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	m, err := fusemount.New(dir, fusemount.Options{Disk: memDisk(make([]byte, 1<<16))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	fd, err := os.Open(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if got, err := unix.Seek(int(fd.Fd()), 100, unix.SEEK_DATA); err != nil || got != 100 {
		t.Errorf("SEEK_DATA at 100 = %d, %v; want 100", got, err)
	}
	if got, err := unix.Seek(int(fd.Fd()), 100, unix.SEEK_HOLE); err != nil || got != 1<<16 {
		t.Errorf("SEEK_HOLE at 100 = %d, %v; want the size", got, err)
	}
}
