package vhd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/container"
)

// FuzzOpen feeds images (in the page encoding of container.EncodePages,
// seeded from testdata/) to Open and reads the disk: any outcome but a
// panic or a hang is fine, and a read either fills its buffer or fails.
func FuzzOpen(f *testing.F) {
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
		p := filepath.Join(dir, "fuzz.vhd")
		if err := container.WritePages(p, data, 64<<20/container.FuzzPageSize); err != nil {
			t.Fatal(err)
		}
		img, err := Open(p)
		if err != nil {
			return
		}
		defer img.Close()
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
	})
}
