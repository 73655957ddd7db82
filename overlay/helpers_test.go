package overlay

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

const testBS = defaultBlockSize

// newSource writes a size-byte source image of seeded random bytes, opens
// it read-only, and checks at cleanup that its content never changed.
func newSource(t testing.TB, size int64, seed uint64) (string, *disk.Source, []byte) {
	t.Helper()
	data := make([]byte, size)
	fillRandom(data, seed)
	path := filepath.Join(t.TempDir(), "source.img")
	if err := os.WriteFile(path, data, 0o444); err != nil {
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

func fillRandom(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

func mustOpen(t testing.TB, path string, base disk.Reader, opts Options) *Overlay {
	t.Helper()
	o, err := Open(path, base, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return o
}

// abandon drops the overlay the way a killed process would: no flush, just
// the descriptor (and so its lock) gone.
func abandon(o *Overlay) {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.f.Close()
}

// checkContent reads the whole disk and compares it with want, naming the
// first differing byte.
func checkContent(t testing.TB, o *Overlay, want []byte, what string) {
	t.Helper()
	got := make([]byte, len(want))
	n, err := o.ReadAt(got, 0)
	if n != len(got) || (err != nil && n != len(got)) {
		t.Fatalf("%s: ReadAt = %d, %v", what, n, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: content differs first at byte %d (block %d): got %#x, want %#x", what, i, i/testBS, got[i], want[i])
	}
}
