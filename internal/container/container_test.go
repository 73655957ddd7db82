package container

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

func TestFileTruncated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, make([]byte, 1000), 0o644)
	f, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 100), 950); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "950") {
		t.Errorf("read past the end: %v", err)
	}
	if !f.Contiguous(900, 100) || f.Contiguous(901, 100) || f.Contiguous(-1, 1) {
		t.Error("Contiguous is wrong at the file's end")
	}
}

func TestCacheBound(t *testing.T) {
	c := NewCache(3)
	for k := int64(0); k < 10; k++ {
		c.Add(k, []byte{byte(k)})
	}
	for k := int64(0); k < 7; k++ {
		if _, ok := c.Get(k); ok {
			t.Errorf("block %d survived eviction", k)
		}
	}
	c.Get(7) // 7 is now the most recent: 8 goes next
	c.Add(10, nil)
	if _, ok := c.Get(8); ok {
		t.Error("the least recently used block was not evicted")
	}
	if b, ok := c.Get(7); !ok || b[0] != 7 {
		t.Error("a recently used block was evicted")
	}
	if _, err := c.Load(99, func() ([]byte, error) { return nil, io.ErrUnexpectedEOF }); err == nil {
		t.Error("Load lost the loader's error")
	}
	if _, ok := c.Get(99); ok {
		t.Error("a failed load was cached")
	}
}

func TestExtentsJoin(t *testing.T) {
	var e Extents
	e.Add(10, 0)
	e.Add(5, 0)
	e.Add(0, Unallocated)
	e.Add(3, Unallocated)
	e.Add(2, disk.ExtentZero)
	want := Extents{{Length: 15}, {Length: 3, Flags: Unallocated}, {Length: 2, Flags: disk.ExtentZero}}
	if len(e) != len(want) {
		t.Fatalf("got %v, want %v", e, want)
	}
	for i := range e {
		if e[i] != want[i] {
			t.Fatalf("got %v, want %v", e, want)
		}
	}
}

// TestReadRangeAndRuns reads a "disk" of shuffled blocks through
// ReadRange and Runs at random offsets and checks every byte and the
// io.EOF contract.
func TestReadRangeAndRuns(t *testing.T) {
	const block, blocks = 512, 64
	dir := t.TempDir()
	data := make([]byte, block*blocks)
	rng := rand.New(rand.NewSource(1))
	rng.Read(data)
	// The file holds pairs of blocks in shuffled order: each pair is one
	// run, and pairs that land in order join longer ones.
	file := make([]byte, len(data))
	where := make([]int64, blocks)
	for slot, pair := range rng.Perm(blocks / 2) {
		where[2*pair] = int64(2*slot) * block
		where[2*pair+1] = int64(2*slot+1) * block
	}
	for b := range where {
		copy(file[where[b]:], data[b*block:(b+1)*block])
	}
	p := filepath.Join(dir, "f")
	os.WriteFile(p, file, 0o644)
	f, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(len(data)) - 100 // the last block is partly past the disk
	read := func(q []byte, off int64) (int, error) {
		runs := NewRuns(q)
		n, err := ReadRange(q, off, size, block, func(s []byte, b, within int64) error {
			return runs.Add(f, int(b*block+within-off), len(s), where[b]+within)
		})
		if ferr := runs.Flush(); ferr != nil {
			return 0, ferr
		}
		return n, err
	}
	for i := 0; i < 2000; i++ {
		off := rng.Int63n(size + 50)
		q := make([]byte, rng.Intn(3*block))
		n, err := read(q, off)
		wantN := int64(len(q))
		if off+wantN > size {
			wantN = max(0, size-off)
		}
		if int64(n) != wantN {
			t.Fatalf("read %d at %d: n = %d, want %d", len(q), off, n, wantN)
		}
		if int64(n) < int64(len(q)) && err != io.EOF {
			t.Fatalf("short read at %d without io.EOF: %v", off, err)
		}
		if int64(n) == int64(len(q)) && err != nil {
			t.Fatalf("full read at %d with %v", off, err)
		}
		if n > 0 && !bytes.Equal(q[:n], data[off:off+int64(n)]) {
			t.Fatalf("read %d at %d: wrong bytes", len(q), off)
		}
	}
}

func TestPagesRoundTrip(t *testing.T) {
	b := make([]byte, 5*FuzzPageSize+100)
	copy(b[FuzzPageSize+7:], "hello")
	enc := EncodePages(b)
	if len(enc) >= len(b) {
		t.Errorf("encoding of a mostly zero file is not smaller: %d bytes", len(enc))
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := WritePages(p, enc, 1<<20); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, b) {
		t.Errorf("round trip differs: %d bytes, want %d", len(got), len(b))
	}
}
