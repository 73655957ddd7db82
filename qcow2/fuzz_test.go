package qcow2

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary files to Open and reads the whole disk (up to a
// bound): any outcome but a panic or a hang is fine, and a read must either
// fill the buffer or fail.
func FuzzOpen(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.qcow2")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	// The backing file the seed backed-v2.qcow2 names.
	if b, err := os.ReadFile("testdata/plain.qcow2"); err == nil {
		os.WriteFile(filepath.Join(dir, "plain.qcow2"), b, 0o644)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "fuzz.qcow2")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := Open(p)
		if err != nil {
			return
		}
		defer img.Close()
		buf := make([]byte, 64<<10)
		for off := int64(0); off < img.Size() && off < 1<<20; off += int64(len(buf)) {
			n, err := img.ReadAt(buf, off)
			if err == nil && n != len(buf) && off+int64(n) != img.Size() {
				t.Fatalf("short read %d at %d without error", n, off)
			}
			if err != nil {
				break
			}
		}
		if img.Size() > 0 {
			img.Extents(0, img.Size())
		}
	})
}
