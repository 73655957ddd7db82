package ewf_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/internal/testutil"
)

// TestTwinsAndCheckedChunks covers the shortcuts of the read path: a
// compressed chunk whose stored bytes equal a checked chunk's shares its
// bytes, and a checked plain chunk is read again as just the bytes asked
// for. A chunk that differs from its twin in one stored byte must still
// fail, on the one-chunk and on the many-chunk path, and reads at any
// offset and length of checked chunks give the oracle's bytes.
func TestTwinsAndCheckedChunks(t *testing.T) {
	dir := t.TempDir()
	size := 4<<20 + 5*512 // a short last chunk
	raw, want := mixedDisk(t, dir, size)
	segs := testutil.EWFAcquire(t, raw, dir, "img", "-c", "deflate:best", "-S", "1M")
	const zeroA, zeroB, zeroC, plain = 50, 60, 61, 2 // zeros lie in [size/3, size/2)
	a, b := ewf.ChunkStoredForTest(t, segs[0], zeroA), ewf.ChunkStoredForTest(t, segs[0], zeroB)
	if !bytes.Equal(a, b) || len(a) > 1024 {
		t.Fatalf("chunks %d and %d are stored as %d and %d different bytes: no twins to test", zeroA, zeroB, len(a), len(b))
	}
	segB, offB := chunkFileOffset(t, segs[0], zeroB)
	flipByte(t, segB, offB+int64(len(b))/2)
	segC, offC := chunkFileOffset(t, segs[0], zeroC)
	flipByte(t, segC, offC+int64(len(b))-2) // inside the Adler-32

	im, err := ewf.OpenWith(segs[0], ewf.Options{CacheBytes: 2 * 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	p := make([]byte, 4096)
	for _, ci := range []int64{zeroA, zeroA - 1, plain, plain} {
		off := ci*32768 + 512
		if _, err := im.ReadAt(p, off); err != nil || !bytes.Equal(p, want[off:off+4096]) {
			t.Fatalf("chunk %d: %v", ci, err)
		}
	}
	if ewf.TwinsForTest(im) == 0 {
		t.Fatal("no twin kept after reading two zero chunks")
	}
	var fe *ewf.FormatError
	for _, tc := range []struct {
		ci, off, n int64
		path       string
		at         int64
	}{
		{zeroB, zeroB*32768 + 100, 4096, segB, offB},        // one chunk
		{zeroB, (zeroB-2)*32768 + 7, 2 * 32768, segB, offB}, // many
		{zeroC, zeroC*32768 + 100, 4096, segC, offC},        // damaged checksum
		{zeroC, zeroC*32768 + 99, 2 * 32768, segC, offC},    // many
	} {
		q := make([]byte, tc.n)
		n, err := im.ReadAt(q, tc.off)
		if n != 0 || !errors.As(err, &fe) || fe.Path != tc.path || fe.Offset != tc.at ||
			!(errors.Is(err, ewf.ErrChecksum) || errors.Is(err, ewf.ErrCorruptChunk)) {
			t.Fatalf("read of damaged twin %d at %d: %d bytes, %v", tc.ci, tc.off, n, err)
		}
	}
	// Odd offsets and lengths within and across checked chunks, the short
	// last one included; read twice so the second pass takes the shortcuts.
	for pass := 0; pass < 2; pass++ {
		for _, r := range [][2]int64{{plain*32768 + 1, 4095}, {plain*32768 + 32767, 2}, {plain * 32768, 32768},
			{zeroA*32768 + 3, 5000}, {int64(size) - 3000, 3000}, {int64(size) - 40000, 40000}, {0, 3 * 32768}} {
			q := make([]byte, r[1])
			if _, err := im.ReadAt(q, r[0]); err != nil || !bytes.Equal(q, want[r[0]:r[0]+r[1]]) {
				t.Fatalf("pass %d, %d bytes at %d: %v", pass, r[1], r[0], err)
			}
		}
	}
}
