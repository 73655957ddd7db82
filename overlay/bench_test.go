package overlay

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

const benchSize = 1 << 30

// benchSource is a sparse 1 GiB source image.
func benchSource(b *testing.B) *disk.Source {
	b.Helper()
	path := filepath.Join(b.TempDir(), "source.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(benchSize); err != nil {
		b.Fatal(err)
	}
	f.Close()
	src, err := disk.OpenSource(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	return src
}

func benchOverlay(b *testing.B, ephemeral bool) *Overlay {
	src := benchSource(b)
	o := mustOpen(b, filepath.Join(b.TempDir(), "ov"), src, Options{Ephemeral: ephemeral})
	b.Cleanup(func() { o.Close() })
	return o
}

func benchRandomWrites(b *testing.B, ephemeral bool, size int, flushEvery int) {
	o := benchOverlay(b, ephemeral)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		p := make([]byte, size)
		fillRandom(p, r.Uint64())
		i := 0
		for pb.Next() {
			off := r.Int64N(benchSize/int64(size)) * int64(size)
			if _, err := o.WriteAt(p, off); err != nil {
				b.Error(err)
				return
			}
			if i++; flushEvery > 0 && i%flushEvery == 0 {
				if err := o.Flush(); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}

func BenchmarkWriteRandom64KEphemeral(b *testing.B) { benchRandomWrites(b, true, 64<<10, 0) }
func BenchmarkWriteRandom4KEphemeral(b *testing.B)  { benchRandomWrites(b, true, 4<<10, 0) }
func BenchmarkWriteRandom64KPersistentFlush64(b *testing.B) {
	benchRandomWrites(b, false, 64<<10, 64)
}

func benchRandomReads(b *testing.B, size int, prefill bool) {
	o := benchOverlay(b, true)
	const span = 64 << 20 // read within the first 64 MiB
	if prefill {
		p := make([]byte, 1<<20)
		for off := int64(0); off < span; off += int64(len(p)) {
			if _, err := o.WriteAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 2))
		p := make([]byte, size)
		for pb.Next() {
			off := r.Int64N(span/int64(size)) * int64(size)
			if _, err := o.ReadAt(p, off); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkReadUnmodified4K(b *testing.B)  { benchRandomReads(b, 4<<10, false) }
func BenchmarkReadUnmodified64K(b *testing.B) { benchRandomReads(b, 64<<10, false) }
func BenchmarkReadOverlay4K(b *testing.B)     { benchRandomReads(b, 4<<10, true) }
func BenchmarkReadOverlay64K(b *testing.B)    { benchRandomReads(b, 64<<10, true) }

// BenchmarkReadSourceDirect4K is the baseline for ReadUnmodified4K: the same
// reads straight from the source.
func BenchmarkReadSourceDirect4K(b *testing.B) {
	src := benchSource(b)
	b.SetBytes(4 << 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 3))
		p := make([]byte, 4<<10)
		for pb.Next() {
			if _, err := src.ReadAt(p, r.Int64N((64<<20)/4096)*4096); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFlushLargeMap measures a commit when the map holds 512 Ki
// entries (every other block of a sparse 64 GiB source zeroed): one 64 KiB
// write plus Flush per operation.
func BenchmarkFlushLargeMap(b *testing.B) {
	const size = 64 << 30
	path := filepath.Join(b.TempDir(), "source.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	src, err := disk.OpenSource(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	o := mustOpen(b, filepath.Join(b.TempDir(), "ov"), src, Options{})
	defer o.Close()
	for v := int64(0); v < size/testBS; v += 2 {
		if err := o.Zero(v*testBS, testBS); err != nil {
			b.Fatal(err)
		}
	}
	if err := o.Flush(); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, testBS)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := o.WriteAt(p, int64(2*i+1)%(size/testBS)*testBS); err != nil {
			b.Fatal(err)
		}
		if err := o.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOverwrite64K rewrites blocks already in an ephemeral overlay
// (the in-place path), one writer at a time like an NBD client at QD1.
func BenchmarkOverwrite64K(b *testing.B) {
	o := benchOverlay(b, true)
	const span = 64 << 20
	p := make([]byte, 64<<10)
	for off := int64(0); off < span; off += int64(len(p)) {
		if _, err := o.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := o.WriteAt(p, r.Int64N(span/int64(len(p)))*int64(len(p))); err != nil {
			b.Fatal(err)
		}
	}
}
