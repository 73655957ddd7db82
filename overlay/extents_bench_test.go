package overlay

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// benchExtents1TiB asks for the allocation of a whole 1 TiB overlay whose
// map holds three changed blocks (written, or zeroed if zero), over a
// sparse source (wrapped by wrap).
func benchExtents1TiB(b *testing.B, wrap func(*disk.Source) disk.Reader, zero bool) {
	const size = 1 << 40
	path := filepath.Join(b.TempDir(), "source.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		b.Skipf("cannot make a 1 TiB sparse file here: %v", err)
	}
	f.Close()
	before, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	src, err := disk.OpenSource(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	o := mustOpen(b, "", wrap(src), Options{Ephemeral: true})
	defer o.Close()
	for _, off := range []int64{7 * testBS, size / 2, size - testBS} {
		var err error
		if zero {
			err = o.Zero(off, testBS)
		} else {
			_, err = o.WriteAt([]byte{1}, off)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		exts, err := o.Extents(0, size)
		if err != nil || len(exts) != 6 {
			b.Fatalf("Extents = %v, %v; want 6 alternating extents", exts, err)
		}
	}
	b.StopTimer()
	// Hashing 1 TiB is out of reach; an unchanged source keeps its mtime,
	// size and (zero) allocated blocks.
	after, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != size || after.Sys().(*syscall.Stat_t).Blocks != 0 {
		b.Fatalf("source changed: mtime %v→%v, size %d, blocks %d", before.ModTime(), after.ModTime(), after.Size(), after.Sys().(*syscall.Stat_t).Blocks)
	}
}

// BenchmarkExtents1TiBThreeBlocks includes the source's lseek calls for the
// four unchanged runs.
func BenchmarkExtents1TiBThreeBlocks(b *testing.B) {
	benchExtents1TiB(b, func(s *disk.Source) disk.Reader { return s }, false)
}

// BenchmarkExtents1TiBThreeBlocksMapOnly is the map walk alone: three zeroed
// blocks over a base that reports no allocation.
func BenchmarkExtents1TiBThreeBlocksMapOnly(b *testing.B) {
	benchExtents1TiB(b, func(s *disk.Source) disk.Reader { return plainReader{s} }, true)
}
