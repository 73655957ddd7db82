package disk

import (
	"bytes"
	"os"
	"testing"
)

// TestSourceFileRange checks that every in-range answer names the source's
// own file at the same offset, so sending those bytes with sendfile gives
// exactly what ReadAt gives, and that out-of-range accesses are refused.
func TestSourceFileRange(t *testing.T) {
	size := int64(3*mib + 1000)
	path := sparseFile(t, t.TempDir(), size, []run{{4097, 70000}, {3 * mib, 1000}})
	s := openSource(t, path)
	for _, c := range []struct{ off, n int64 }{{0, 1}, {4000, 80000}, {0, size}, {size - 1, 1}, {size, 0}} {
		f, foff, ok := s.FileRange(c.off, c.n)
		if !ok || foff != c.off || f != s.File() {
			t.Fatalf("FileRange(%d, %d) = %v, %d, %v; want the source file at the same offset", c.off, c.n, f, foff, ok)
		}
		want := make([]byte, c.n)
		if _, err := s.ReadAt(want, c.off); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, c.n)
		if _, err := f.ReadAt(got, foff); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("FileRange(%d, %d): bytes differ from ReadAt", c.off, c.n)
		}
	}
	for _, c := range []struct{ off, n int64 }{{-1, 1}, {0, size + 1}, {size, 1}, {1, -1}, {size + 1, 0}} {
		if _, _, ok := s.FileRange(c.off, c.n); ok {
			t.Errorf("FileRange(%d, %d) accepted an access outside the %d-byte source", c.off, c.n, size)
		}
	}
}

// TestSourceFileRangeBlockDevice checks that a block device is never mapped:
// its read errors must fail one request through ReadAt.
func TestSourceFileRangeBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("attaching a loop device needs root")
	}
	dev := loopDevice(t, sparseFile(t, t.TempDir(), 4*mib, []run{{mib, 4096}}))
	s := openSource(t, dev)
	if _, _, ok := s.FileRange(0, 4096); ok {
		t.Fatalf("%s: a block device was mapped for sendfile", dev)
	}
}
