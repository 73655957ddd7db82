package ewf_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/internal/testutil"
)

// mixedDisk writes a raw disk of random, zero and repetitive data whose
// size is not a whole number of chunks, so E01 sets made from it hold
// compressed, stored and short chunks.
func mixedDisk(t testing.TB, dir string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b[:size/3])
	copy(b[size/2:], bytes.Repeat([]byte("kvmify E01 test "), size/32))
	rand.Read(b[size-size/5:])
	p := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func readAll(t testing.TB, r io.ReaderAt, size int64) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sums(t testing.TB, paths []string) map[string]string {
	m := map[string]string{}
	for _, p := range paths {
		m[p] = testutil.FileSHA256(t, p)
	}
	return m
}

// ewfexportRaw is the oracle: libewf's own export of the set to raw.
func ewfexportRaw(t testing.TB, first string) []byte {
	t.Helper()
	tool := testutil.RequireTool(t, "ewfexport")
	out := filepath.Join(t.TempDir(), "oracle")
	if b, err := exec.Command(tool, "-u", "-q", "-f", "raw", "-t", out, first).CombinedOutput(); err != nil {
		t.Fatalf("ewfexport: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out + ".raw")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadsEwfacquireSets(t *testing.T) {
	dir := t.TempDir()
	raw, want := mixedDisk(t, dir, 5<<20+3*512)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"encase6-fast", []string{"-c", "deflate:fast", "-S", "1M"}},
		{"encase6-best", []string{"-c", "deflate:best", "-S", "1M"}},
		{"encase6-none", []string{"-c", "none", "-S", "2M"}},
		{"encase6-empty-block-4k-sectors", []string{"-c", "empty-block", "-P", "4096", "-b", "16"}},
		{"encase5", []string{"-f", "encase5", "-c", "deflate:fast", "-S", "1M"}},
		{"encase2", []string{"-f", "encase2", "-c", "deflate:best", "-S", "1M"}},
		{"ftk", []string{"-f", "ftk", "-c", "deflate:fast", "-S", "1M"}},
		{"linen6", []string{"-f", "linen6", "-c", "deflate:fast", "-S", "1M"}},
		{"ewf", []string{"-f", "ewf", "-c", "deflate:fast", "-S", "1M"}},
		{"smart", []string{"-f", "smart", "-c", "deflate:fast", "-S", "1M"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs := testutil.EWFAcquire(t, raw, t.TempDir(), "img", tc.args...)
			before := sums(t, segs)
			im, err := ewf.Open(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if len(im.InputFiles()) != len(segs) {
				t.Fatalf("InputFiles %v, ewfacquire wrote %v", im.InputFiles(), segs)
			}
			// The media is whole sectors: a partial last one is left out, as
			// libewf leaves it out too.
			raw0 := want
			want := want[:int64(len(want))/int64(im.Media().BytesPerSector)*int64(im.Media().BytesPerSector)]
			if im.Size() != int64(len(want)) {
				t.Fatalf("size %d, want %d", im.Size(), len(want))
			}
			got := readAll(t, im, im.Size())
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatal("bytes differ from the raw disk")
			}
			if oracle := ewfexportRaw(t, segs[0]); !bytes.Equal(oracle, got) {
				t.Fatal("bytes differ from ewfexport's")
			}
			res, err := ewf.Verify(t.Context(), im, nil)
			if err != nil {
				t.Fatal(err)
			}
			// ewfverify is the oracle: it fails where the acquisition hashed
			// a partial last sector that the media leaves out.
			oracleOK := exec.Command(testutil.RequireTool(t, "ewfverify"), "-q", segs[0]).Run() == nil
			if res.OK() != oracleOK || res.Stored.MD5 == nil {
				t.Fatalf("verify: %+v; ewfverify ok %v", res, oracleOK)
			}
			if oracleOK != (len(got) == len(raw0)) {
				t.Fatalf("ewfverify ok %v for %d of %d bytes", oracleOK, len(got), len(raw0))
			}
			t.Logf("%d segments, %d problems, stored md5 %x sha1 %x", len(segs), len(im.Problems()), res.Stored.MD5, res.Stored.SHA1)
			im.Close()
			for p, s := range before {
				if testutil.FileSHA256(t, p) != s {
					t.Fatalf("%s changed", p)
				}
			}
		})
	}
}

func TestConcurrentReadsAndSmallCache(t *testing.T) {
	dir := t.TempDir()
	raw, want := mixedDisk(t, dir, 4<<20)
	segs := testutil.EWFAcquire(t, raw, dir, "img", "-c", "deflate:fast", "-S", "1M")
	im, err := ewf.OpenWith(segs[0], ewf.Options{CacheBytes: 3 * 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := make([]byte, 12345)
			for i := 0; i < 200; i++ {
				off := int64((g*7919 + i*104729) * 37 % (len(want) - len(p)))
				if _, err := im.ReadAt(p, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, want[off:off+int64(len(p))]) {
					errs <- errors.New("bytes differ at " + string(rune(off)))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// flipByte changes one byte of a file in place (the test's own copy).
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestDamageIsNamed(t *testing.T) {
	dir := t.TempDir()
	raw, want := mixedDisk(t, dir, 4<<20)
	fresh := func(t *testing.T, compress string) []string {
		return testutil.EWFAcquire(t, raw, t.TempDir(), "img", "-c", compress, "-S", "1M")
	}
	var fe *ewf.FormatError

	// A flipped byte inside a compressed chunk and inside a stored one:
	// the first sectors section's chunk 40 of segment 1 is compressible
	// (zeros), chunk 2 is random (stored).
	for _, tc := range []struct {
		name     string
		compress string
		chunk    int64 // media chunk whose stored bytes are damaged
	}{
		{"compressed", "deflate:best", 60},
		{"stored", "deflate:fast", 2},
	} {
		t.Run("flipped-"+tc.name, func(t *testing.T) {
			segs := fresh(t, tc.compress)
			seg, chunkOff := chunkFileOffset(t, segs[0], tc.chunk)
			flipByte(t, seg, chunkOff+10)
			im, err := ewf.Open(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			p := make([]byte, 4096)
			n, err := im.ReadAt(p, tc.chunk*32768+100)
			if !errors.As(err, &fe) || fe.Path != seg || fe.Offset != chunkOff || n != 0 {
				t.Fatalf("read of the damaged chunk: %d bytes, %v", n, err)
			}
			if !errors.Is(err, ewf.ErrChecksum) && !errors.Is(err, ewf.ErrCorruptChunk) {
				t.Fatalf("error %v is neither a checksum nor a corrupt chunk", err)
			}
			t.Log(err)
			// The chunks around it still read.
			if _, err := im.ReadAt(p, (tc.chunk+1)*32768); err != nil || !bytes.Equal(p, want[(tc.chunk+1)*32768:][:4096]) {
				t.Fatalf("next chunk: %v", err)
			}
			if _, err := ewf.Verify(t.Context(), im, nil); !errors.As(err, &fe) {
				t.Fatalf("verify over a damaged chunk: %v", err)
			}
		})
	}

	t.Run("missing-segment", func(t *testing.T) {
		segs := fresh(t, "deflate:fast")
		os.Remove(segs[1])
		_, err := ewf.Open(segs[0])
		if !errors.Is(err, ewf.ErrMissingSegment) || !errors.As(err, &fe) || fe.Path != segs[1] {
			t.Fatalf("open without segment 2: %v", err)
		}
		t.Log(err)
	})

	t.Run("truncated-segment", func(t *testing.T) {
		segs := fresh(t, "deflate:fast")
		fi, _ := os.Stat(segs[1])
		os.Truncate(segs[1], fi.Size()-1000)
		_, err := ewf.Open(segs[0])
		if !errors.Is(err, ewf.ErrTruncated) || !errors.As(err, &fe) || fe.Path != segs[1] {
			t.Fatalf("open with segment 2 cut short: %v", err)
		}
		t.Log(err)
	})

	t.Run("second-segment-first", func(t *testing.T) {
		segs := fresh(t, "deflate:fast")
		_, err := ewf.Open(segs[1])
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "segment 2") {
			t.Fatalf("open of .E02: %v", err)
		}
	})

	t.Run("table-falls-back-on-table2", func(t *testing.T) {
		segs := fresh(t, "deflate:fast")
		tab := sectionOffset(t, segs[0], "table")
		flipByte(t, segs[0], tab+76+24+8) // an entry of the table
		im, err := ewf.Open(segs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer im.Close()
		if len(im.Problems()) != 1 || !errors.Is(im.Problems()[0], ewf.ErrChecksum) {
			t.Fatalf("problems %v", im.Problems())
		}
		if got := readAll(t, im, im.Size()); !bytes.Equal(got, want) {
			t.Fatal("bytes differ after the table2 fallback")
		}
		// Both copies damaged: an error.
		flipByte(t, segs[0], sectionOffset(t, segs[0], "table2")+76+24+8)
		if _, err := ewf.Open(segs[0]); !errors.Is(err, ewf.ErrChecksum) {
			t.Fatalf("both tables damaged: %v", err)
		}
	})
}

func chunkFileOffset(t testing.TB, first string, ci int64) (string, int64) {
	return ewf.ChunkFileOffsetForTest(t, first, ci)
}

func sectionOffset(t testing.TB, path, typ string) int64 {
	return ewf.SectionOffsetForTest(t, path, typ)
}

// TestMoreThan99Segments reads a set whose names run past .E99 into .EAA…,
// as ewfacquire names them.
func TestMoreThan99Segments(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	want := make([]byte, 104<<20)
	rand.Read(want)
	if err := os.WriteFile(raw, want, 0o644); err != nil {
		t.Fatal(err)
	}
	segs := testutil.EWFAcquire(t, raw, dir, "many", "-c", "none", "-S", "1M")
	if len(segs) < 101 {
		t.Fatalf("ewfacquire wrote %d segments; the test needs more than 100", len(segs))
	}
	im, err := ewf.Open(filepath.Join(dir, "many.E01"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if len(im.InputFiles()) != len(segs) {
		t.Fatalf("%d input files, ewfacquire wrote %d", len(im.InputFiles()), len(segs))
	}
	if got := readAll(t, im, im.Size()); sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatal("bytes differ from the raw disk")
	}
}
