package ewf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds every file in testdata/ (single-segment sets written by
// ewfacquire) to the corpus.
func addSeeds(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.[Ees]01"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata")
	}
}

// FuzzParseSegment feeds arbitrary bytes to the section, volume and table
// parsers: any answer but a panic or a hang is fine, and a parsed table
// never points past the data.
func FuzzParseSegment(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := parseSegment(bytes.NewReader(data), "fuzz.E01", int64(len(data)))
		if err != nil {
			return
		}
		for _, tb := range seg.Tables {
			if tb.DataEnd > int64(len(data)) {
				t.Fatalf("table data ends at %d past %d", tb.DataEnd, len(data))
			}
		}
	})
}

// FuzzReadImage opens arbitrary bytes as a one-segment set and reads all
// of its media (bounded): a read either fills the buffer or fails with an
// error; it never panics.
func FuzzReadImage(f *testing.F) {
	addSeeds(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.E01")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := OpenWith(p, Options{CacheBytes: 1 << 20})
		if err != nil {
			return
		}
		defer im.Close()
		buf := make([]byte, 4096)
		for off := int64(0); off < min(im.Size(), 1<<20); off += int64(len(buf)) {
			n, err := im.ReadAt(buf, off)
			if err == nil && n != len(buf) {
				t.Fatalf("short read %d without an error", n)
			}
			if err != nil && err != io.EOF {
				return
			}
		}
	})
}
