package ewf_test

import (
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/internal/testutil"
)

// benchSet is one E01 set shared by the benchmarks: KVMIFY_BENCH_E01 names
// a first segment to use, else a 64 MiB mixed disk is acquired once.
var benchSet struct {
	once  sync.Once
	first string
	size  int64
}

func benchE01(b *testing.B) string {
	benchSet.once.Do(func() {
		if p := os.Getenv("KVMIFY_BENCH_E01"); p != "" {
			benchSet.first = p
			return
		}
		dir, err := os.MkdirTemp("", "ewfbench")
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := mixedDisk(b, dir, 64<<20)
		benchSet.first = testutil.EWFAcquire(b, raw, dir, "bench", "-c", "deflate:fast")[0]
	})
	if benchSet.first == "" {
		b.Fatal("no bench set")
	}
	return benchSet.first
}

// BenchmarkSequentialRead reads the whole media in 1 MiB requests, each
// pass through a freshly opened Image, so every chunk is checked (and
// inflated) as on a first read.
func BenchmarkSequentialRead(b *testing.B) {
	first := benchE01(b)
	p := make([]byte, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		im, err := ewf.Open(first)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(im.Size())
		for off := int64(0); off < im.Size(); off += int64(len(p)) {
			if _, err := im.ReadAt(p, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
		im.Close()
	}
}

// BenchmarkEwfexport is the peer: libewf's ewfexport of the same set to
// /dev/null, per byte of media.
func BenchmarkEwfexport(b *testing.B) {
	first := benchE01(b)
	tool := testutil.RequireTool(b, "ewfexport")
	im, err := ewf.Open(first)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(im.Size())
	im.Close()
	for b.Loop() {
		cmd := exec.Command(tool, "-u", "-q", "-f", "raw", "-t", "-", first)
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRandomRead4K reads 4 KiB at random sector-aligned offsets with
// the default cache (64 MiB), from one Image: after the first touches, the
// steady state of a long-running server.
func BenchmarkRandomRead4K(b *testing.B) {
	first := benchE01(b)
	im, err := ewf.Open(first)
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	b.SetBytes(4096)
	p := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		off := r.Int64N(im.Size()/4096) * 4096
		if _, err := im.ReadAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
}
