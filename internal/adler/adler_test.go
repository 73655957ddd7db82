package adler

import (
	"bytes"
	"hash/adler32"
	"math/rand/v2"
	"testing"
)

// FuzzChecksum checks Checksum against hash/adler32 on any bytes, and on
// runs of 0xff long enough to stress the deferred modulo.
func FuzzChecksum(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("Wikipedia"))
	f.Add(bytes.Repeat([]byte{0xff}, 3*adlerNMax+17))
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 15, 16, 17, 5551, 5552, 5553, 32768} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := Checksum(p), adler32.Checksum(p); got != want {
			t.Fatalf("Checksum of %d bytes %#08x, hash/adler32 %#08x", len(p), got, want)
		}
		q := bytes.Repeat([]byte{0xff}, len(p)+adlerNMax)
		copy(q, p)
		if got, want := Checksum(q), adler32.Checksum(q); got != want {
			t.Fatalf("Checksum of %d bytes ending in 0xff %#08x, hash/adler32 %#08x", len(q), got, want)
		}
	})
}

// BenchmarkChecksum compares Checksum with hash/adler32 on one 32 KiB chunk.
func BenchmarkChecksum(b *testing.B) {
	p := make([]byte, 32768)
	for i := range p {
		p[i] = byte(i * 7)
	}
	b.Run("Checksum", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			Checksum(p)
		}
	})
	b.Run("hash-adler32", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			adler32.Checksum(p)
		}
	})
}
