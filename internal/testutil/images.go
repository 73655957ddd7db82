package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SparseRandomDisk writes a raw disk of size bytes (a multiple of 1 MiB)
// at path whose megabytes are, by a seeded choice, random data at a random
// place, written zeros, or holes, so container converters produce
// allocated, zero and unallocated blocks alike.
func SparseRandomDisk(t testing.TB, path string, size int64, seed int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(seed))
	const mb = 1 << 20
	for off := int64(0); off+mb <= size; off += mb {
		var buf []byte
		at := off
		switch r := rng.Intn(10); {
		case r < 5:
			at += int64(rng.Intn(mb / 2))
			buf = make([]byte, 1+rng.Intn(mb/2))
			rng.Read(buf)
		case r < 6:
			buf = make([]byte, mb)
		default:
			continue
		}
		if _, err := f.WriteAt(buf, at); err != nil {
			t.Fatal(err)
		}
	}
}

// QemuImg runs qemu-img with args and fails the test on error.
func QemuImg(t testing.TB, args ...string) {
	t.Helper()
	qemuImg := RequireTool(t, "qemu-img")
	if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// OracleSHA256 is the sha256 and length of the logical disk of a container
// image as `qemu-img convert -O raw` reads it; a format given is passed
// as -f (a fixed VHD, having no header, is otherwise probed as raw).
func OracleSHA256(t testing.TB, image string, format ...string) (string, int64) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	args := []string{"convert", "-O", "raw"}
	if len(format) > 0 {
		args = append(args, "-f", format[0])
	}
	QemuImg(t, append(args, image, out)...)
	defer os.Remove(out)
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	return FileSHA256(t, out), fi.Size()
}

// ReaderSHA256 is the sha256 of the first size bytes read from r in 1 MiB
// reads, failing the test on any read error.
func ReaderSHA256(t testing.TB, r io.ReaderAt, size int64) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(r, 0, size), make([]byte, 1<<20)); err != nil {
		t.Fatalf("reading the disk: %v", err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FileHashes records the sha256 of every file in paths, to prove later with
// Unchanged that none was written.
type FileHashes map[string]string

// HashFiles returns the sha256 of every file in paths.
func HashFiles(t testing.TB, paths ...string) FileHashes {
	t.Helper()
	h := FileHashes{}
	for _, p := range paths {
		h[p] = FileSHA256(t, p)
	}
	return h
}

// Unchanged fails the test if any recorded file's content changed.
func (h FileHashes) Unchanged(t testing.TB) {
	t.Helper()
	for p, sum := range h {
		if got := FileSHA256(t, p); got != sum {
			t.Errorf("%s changed: sha256 %s, was %s", p, got, sum)
		}
	}
}

// OracleRaw is the logical disk of a container image as `qemu-img convert
// -O raw` reads it, in memory (for small test disks).
func OracleRaw(t testing.TB, image string, format ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	args := []string{"convert", "-O", "raw"}
	if len(format) > 0 {
		args = append(args, "-f", format[0])
	}
	QemuImg(t, append(args, image, out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	return b
}

// ConcurrentReads has goroutines read random ranges of r at once and
// compares each with want, the disk's expected content: readers that
// decode blocks (decompression, table caches) must stay correct when
// requests overlap.
func ConcurrentReads(t testing.TB, r io.ReaderAt, want []byte, goroutines, reads int) {
	t.Helper()
	errc := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		go func(seed int64) {
			rng := rand.New(rand.NewSource(seed))
			for i := 0; i < reads; i++ {
				n := 1 + rng.Intn(200<<10)
				off := rng.Int63n(int64(len(want) - n))
				buf := make([]byte, n)
				if _, err := r.ReadAt(buf, off); err != nil {
					errc <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+int64(n)]) {
					errc <- fmt.Errorf("read %d bytes at %d: differs from the oracle", n, off)
					return
				}
			}
			errc <- nil
		}(int64(g))
	}
	for g := 0; g < goroutines; g++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// CheckFileRanges asks r for the file behind ranges across its disk and
// checks each answer by reading that file at the offset given, against
// r's own ReadAt. It returns how many ranges were answered.
// (disk.Reader and disk.FileRanger are spelled out: disk's tests import
// this package.)
func CheckFileRanges(t testing.TB, r interface {
	io.ReaderAt
	Size() int64
}) int {
	t.Helper()
	fr, ok := r.(interface {
		FileRange(off, n int64) (*os.File, int64, bool)
	})
	if !ok {
		t.Fatalf("%T is no disk.FileRanger", r)
	}
	answered := 0
	const n = 160 << 10
	for off := int64(0); off+n <= r.Size(); off += 96 << 10 {
		f, foff, ok := fr.FileRange(off, n)
		if !ok {
			continue
		}
		answered++
		got := make([]byte, n)
		if _, err := f.ReadAt(got, foff); err != nil {
			t.Fatalf("FileRange(%d, %d) = %s at %d: %v", off, n, f.Name(), foff, err)
		}
		want := make([]byte, n)
		if _, err := r.ReadAt(want, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("FileRange(%d, %d) = %s at %d, whose bytes differ from ReadAt", off, n, f.Name(), foff)
		}
	}
	return answered
}
