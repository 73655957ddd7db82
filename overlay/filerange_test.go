package overlay

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestFileRange checks that only ranges the overlay holds nothing of are
// mapped to the source file, and that those read the same as ReadAt.
func TestFileRange(t *testing.T) {
	size := int64(20*testBS + 123)
	_, src, data := newSource(t, size, 11)
	o := mustOpen(t, filepath.Join(t.TempDir(), "ov"), src, Options{})
	defer o.Close()
	if _, err := o.WriteAt([]byte("changed"), 3*testBS+5); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(7*testBS, testBS); err != nil {
		t.Fatal(err)
	}
	held := func(off, n int64) bool {
		for v := off / testBS; v <= (off+n-1)/testBS; v++ {
			if v == 3 || v == 7 {
				return true
			}
		}
		return false
	}
	cases := []struct{ off, n int64 }{
		{0, 1}, {0, 3 * testBS}, {0, 3*testBS + 1}, {3 * testBS, 1}, {4 * testBS, 3 * testBS},
		{4 * testBS, 3*testBS + 1}, {6*testBS + 17, 2 * testBS}, {8 * testBS, size - 8*testBS},
		{size - 1, 1}, {0, size},
	}
	for _, c := range cases {
		f, foff, ok := o.FileRange(c.off, c.n)
		if ok == held(c.off, c.n) {
			t.Errorf("FileRange(%d, %d) ok=%v, but overlay holds a block of it: %v", c.off, c.n, ok, held(c.off, c.n))
			continue
		}
		if !ok {
			continue
		}
		got := make([]byte, c.n)
		if _, err := f.ReadAt(got, foff); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Errorf("FileRange(%d, %d): file bytes differ from the disk's", c.off, c.n)
		}
	}
	for _, c := range []struct{ off, n int64 }{{-1, 2}, {0, 0}, {size, 1}, {0, size + 1}} {
		if _, _, ok := o.FileRange(c.off, c.n); ok {
			t.Errorf("FileRange(%d, %d) accepted an access outside the %d-byte disk", c.off, c.n, size)
		}
	}
	o.Close()
	if _, _, ok := o.FileRange(0, 1); ok {
		t.Error("a closed overlay still maps ranges")
	}
}

// TestFileRangeNeedsFileBase checks that a base without files is never
// mapped, whatever the overlay holds.
func TestFileRangeNeedsFileBase(t *testing.T) {
	size := int64(4 * testBS)
	_, _, data := newSource(t, size, 12)
	o := mustOpen(t, filepath.Join(t.TempDir(), "ov"), bytesDisk(data), Options{})
	defer o.Close()
	if _, _, ok := o.FileRange(0, size); ok {
		t.Fatal("range mapped over a base that has no file")
	}
}

// bytesDisk is a disk held in memory, which has no file to send from.
type bytesDisk []byte

func (b bytesDisk) ReadAt(p []byte, off int64) (int, error) { return bytes.NewReader(b).ReadAt(p, off) }
func (b bytesDisk) Size() int64                             { return int64(len(b)) }
