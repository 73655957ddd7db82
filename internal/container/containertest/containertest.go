// Package containertest holds the checks every container reader's tests
// run against qemu-img's reading of the same image.
package containertest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/container"
	"github.com/kvmify/kvmify/internal/testutil"
)

// Image is what a container reader opens.
type Image interface {
	disk.Reader
	disk.Extenter
	InputFiles() []string
	Format() string
}

// Matches checks that img reads as qemu-img converts it (want and size from
// testutil.OracleSHA256), that every extent it calls zero holds zeros, that
// its file ranges read what ReadAt reads, and that none of its input files
// changed meanwhile.
func Matches(t *testing.T, img Image, want string, size int64) {
	t.Helper()
	before := testutil.HashFiles(t, img.InputFiles()...)
	if img.Size() != size {
		t.Fatalf("Size = %d, qemu-img says %d", img.Size(), size)
	}
	if got := testutil.ReaderSHA256(t, img, img.Size()); got != want {
		t.Fatalf("logical disk sha256 %s, qemu-img convert gives %s", got, want)
	}
	ZeroExtents(t, img)
	t.Logf("%d ranges mapped to a file run", testutil.CheckFileRanges(t, img))
	before.Unchanged(t)
}

// ZeroExtents walks img's Extents answers over the whole disk and reads
// every extent said to be zero, which must be zeros.
func ZeroExtents(t *testing.T, img Image) {
	t.Helper()
	var holes int64
	for pos := int64(0); pos < img.Size(); {
		exts, err := img.Extents(pos, img.Size()-pos)
		if err != nil {
			t.Fatal(err)
		}
		if err := disk.CheckExtents(exts, pos, img.Size()-pos, img.Size()); err != nil {
			t.Fatal(err)
		}
		for _, e := range exts {
			if e.Flags&disk.ExtentZero != 0 {
				holes += e.Length
				b := make([]byte, e.Length)
				if _, err := img.ReadAt(b, pos); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, make([]byte, len(b))) {
					t.Fatalf("extent at %d+%d is reported zero but holds data", pos, e.Length)
				}
			}
			pos += e.Length
		}
	}
	t.Logf("%s: %d of %d bytes reported zero", img.Format(), holes, img.Size())
}

// Closer is an Image that is closed after use.
type Closer interface {
	Image
	Close() error
}

// FuzzOpen runs a reader's Open on fuzzed images: each input, in the page
// encoding of container.EncodePages (seeded from testdata/*.pages), is
// written as a file named name of size bytes and opened, and the disk is
// read. Any outcome but a panic or a hang is fine; a read either fills its
// buffer or fails.
func FuzzOpen[T Closer](f *testing.F, name string, size uint32, open func(path string) (T, error)) {
	seeds, _ := filepath.Glob("testdata/*.pages")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, name)
		if err := container.WritePages(p, data, size/container.FuzzPageSize); err != nil {
			t.Fatal(err)
		}
		img, err := open(p)
		if err != nil {
			return
		}
		defer img.Close()
		ReadSome(t, img)
	})
}

// ReadSome reads the first 2 MiB of img and asks for its extents: a read
// either fills its buffer or fails (the fuzz targets' property).
func ReadSome(t *testing.T, img Image) {
	t.Helper()
	buf := make([]byte, 256<<10)
	for off := int64(0); off < img.Size() && off < 2<<20; off += int64(len(buf)) {
		n, err := img.ReadAt(buf, off)
		if err != nil {
			break
		}
		if n != len(buf) && off+int64(n) != img.Size() {
			t.Fatalf("short read %d at %d without error", n, off)
		}
	}
	img.Extents(0, img.Size())
}

// SeedsOpen keeps a reader's fuzz seeds meaningful: each testdata/*.pages
// decodes (as a file named name) to an image that opens.
func SeedsOpen[T Closer](t *testing.T, name string, open func(path string) (T, error)) {
	t.Helper()
	seeds, _ := filepath.Glob("testdata/*.pages")
	if len(seeds) == 0 {
		t.Fatal("no seeds")
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name)
		if err := container.WritePages(p, b, 1<<20); err != nil {
			t.Fatal(err)
		}
		img, err := open(p)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		img.Close()
	}
}
