package disk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestWithWritesMatchesApplied compares the planned view with a copy of
// the file to which the same writes were applied with WriteAt, for random
// overlapping writes and random reads.
func TestWithWritesMatchesApplied(t *testing.T) {
	const size = 1 << 16
	r := rand.New(rand.NewPCG(7, 7))
	base := make([]byte, size)
	for i := range base {
		base[i] = byte(r.Uint32())
	}
	dir := t.TempDir()
	srcPath, cpPath := filepath.Join(dir, "src"), filepath.Join(dir, "copy")
	if err := os.WriteFile(srcPath, base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cpPath, base, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cp, err := os.OpenFile(cpPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	var ws []Write
	for i := 0; i < 200; i++ {
		n := 1 + r.IntN(3000)
		off := r.Int64N(size - int64(n))
		d := make([]byte, n)
		for j := range d {
			d[j] = byte(r.Uint32())
		}
		ws = append(ws, Write{Offset: off, Data: d, What: "test"})
		if _, err := cp.WriteAt(d, off); err != nil {
			t.Fatal(err)
		}
	}
	p, err := WithWrites(src, ws)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != size {
		t.Fatalf("Size %d, want %d", p.Size(), size)
	}
	for i := 0; i < 2000; i++ {
		off := r.Int64N(size)
		n := 1 + r.IntN(5000)
		got := make([]byte, n)
		want := make([]byte, n)
		gn, gerr := p.ReadAt(got, off)
		wn, werr := cp.ReadAt(want, off)
		if gn != wn || (gerr == io.EOF) != (werr == io.EOF) || !bytes.Equal(got[:gn], want[:wn]) {
			t.Fatalf("read %d at %d: got %d bytes (%v), applied copy %d bytes (%v), equal %v",
				n, off, gn, gerr, wn, werr, bytes.Equal(got[:gn], want[:wn]))
		}
	}
	after, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, base) {
		t.Fatal("source file changed")
	}
}

func TestWithWritesRefusesOutside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, w := range []Write{{Offset: 4000, Data: make([]byte, 97)}, {Offset: -1, Data: []byte{1}}} {
		if _, err := WithWrites(src, []Write{w}); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("write of %d at %d: err %v, want ErrOutOfRange", len(w.Data), w.Offset, err)
		}
	}
}
