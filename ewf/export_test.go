package ewf

import (
	"os"
	"testing"
)

// ChunkFileOffsetForTest is where chunk ci of the set first begins is stored.
func ChunkFileOffsetForTest(t testing.TB, first string, ci int64) (string, int64) {
	im, err := Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	seg, start, _, _ := im.chunkLocation(ci)
	return im.paths[seg], start
}

// SectionOffsetForTest is the offset of the first section of type typ.
func SectionOffsetForTest(t testing.TB, path, typ string) int64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	secs, err := parseSections(f, path, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.Type == typ {
			return s.Start
		}
	}
	t.Fatalf("%s has no %s section", path, typ)
	return 0
}

// ChunkStoredForTest is chunk ci's stored bytes, as its table places them.
func ChunkStoredForTest(t testing.TB, first string, ci int64) []byte {
	im, err := Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	seg, start, stored, _ := im.chunkLocation(ci)
	b := make([]byte, stored)
	if _, err := im.files[seg].ReadAt(b, start); err != nil {
		t.Fatal(err)
	}
	return b
}

// TwinsForTest is how many inflated chunks im's twin table holds.
func TwinsForTest(im *Image) int {
	im.twins.mu.RLock()
	defer im.twins.mu.RUnlock()
	return len(im.twins.entries)
}
