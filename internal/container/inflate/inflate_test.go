package inflate

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// samples are data of the kinds disk clusters hold: random (stored or
// Huffman-only blocks), text (literal-heavy), runs and repeats (long
// matches, overlapping copies), zeros.
func samples() map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := []byte(base64.StdEncoding.EncodeToString(random))[:100<<10]
	mixed := make([]byte, 0, 200<<10)
	for len(mixed) < 200<<10 {
		switch r.IntN(4) {
		case 0:
			mixed = append(mixed, random[:r.IntN(3000)]...)
		case 1:
			mixed = append(mixed, bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(5000))...)
		case 2:
			mixed = append(mixed, text[r.IntN(1000):][:r.IntN(9000)]...)
		default:
			if len(mixed) > 10 {
				d := 1 + r.IntN(min(len(mixed), 32768)-1)
				for range r.IntN(600) {
					mixed = append(mixed, mixed[len(mixed)-d])
				}
			}
		}
	}
	return map[string][]byte{
		"random": random, "text": text, "mixed": mixed,
		"zeros": make([]byte, 64<<10), "short": []byte("a"), "empty": nil,
	}
}

func deflate(t testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func zlibOf(t testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return b.Bytes()
}

var levels = []int{flate.HuffmanOnly, flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression}

// TestRoundTrip decodes what compress/flate and compress/zlib encode, at
// every level, whole and into a shorter buffer.
func TestRoundTrip(t *testing.T) {
	var d Decoder
	for name, data := range samples() {
		for _, lv := range levels {
			z := deflate(t, data, lv)
			dst := make([]byte, len(data)+100)
			n, err := d.Deflate(dst, z)
			if err != nil || !bytes.Equal(dst[:n], data) {
				t.Fatalf("%s level %d: Deflate: %d bytes, %v; want %d bytes equal", name, lv, n, err, len(data))
			}
			if len(data) > 1 {
				k := len(data) / 3
				n, err = d.Deflate(dst[:k], z)
				if err != nil || n != k || !bytes.Equal(dst[:k], data[:k]) {
					t.Fatalf("%s level %d: Deflate into %d bytes: %d, %v", name, lv, k, n, err)
				}
			}
			zz := zlibOf(t, data, lv)
			n, err = d.Zlib(dst[:len(data)], zz)
			if err != nil || !bytes.Equal(dst[:n], data) {
				t.Fatalf("%s level %d: Zlib: %d bytes, %v", name, lv, n, err)
			}
			if len(data) > 0 {
				if _, err = d.Zlib(dst[:len(data)-1], zz); !errors.Is(err, ErrTooLong) {
					t.Fatalf("%s level %d: Zlib into a buffer one byte short: %v, want ErrTooLong", name, lv, err)
				}
			}
		}
	}
}

// TestTruncated cuts a zlib stream at every length: each cut is an error,
// never fewer or other bytes.
func TestTruncated(t *testing.T) {
	var d Decoder
	data := samples()["mixed"][:20000]
	for _, lv := range levels {
		z := zlibOf(t, data, lv)
		dst := make([]byte, len(data))
		for cut := range len(z) {
			if n, err := d.Zlib(dst, z[:cut]); err == nil {
				t.Fatalf("level %d: stream cut to %d of %d bytes decoded (%d bytes) without error", lv, cut, len(z), n)
			} else if !errors.Is(err, ErrTruncated) && cut > 2 {
				t.Fatalf("level %d: cut at %d: %v, want ErrTruncated", lv, cut, err)
			}
		}
	}
}

// TestCorrupt flips bytes of zlib streams and compares with compress/zlib:
// both fail or both give the same bytes; a flipped checksum is
// ErrChecksum.
func TestCorrupt(t *testing.T) {
	var d Decoder
	r := rand.New(rand.NewPCG(3, 4))
	for name, data := range samples() {
		for _, lv := range levels {
			z := zlibOf(t, data, lv)
			for range 200 {
				c := bytes.Clone(z)
				c[r.IntN(len(c))] ^= byte(1 + r.IntN(255))
				compare(t, &d, name, c, len(data))
			}
			c := bytes.Clone(z)
			c[len(c)-1] ^= 1
			if _, err := d.Zlib(make([]byte, len(data)), c); !errors.Is(err, ErrChecksum) {
				t.Fatalf("%s level %d: flipped checksum: %v", name, lv, err)
			}
		}
	}
}

// compare decodes z with Zlib into size bytes and with compress/zlib.
func compare(t *testing.T, d *Decoder, name string, z []byte, size int) {
	t.Helper()
	want, werr := stdZlib(z, size)
	dst := make([]byte, size)
	n, err := d.Zlib(dst, z)
	if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(dst[:n], want) {
		t.Fatalf("%s: stream %x: ours %d bytes, %v; compress/zlib %d bytes, %v", name, z, n, err, len(want), werr)
	}
}

// stdZlib decodes z with compress/zlib; more than size bytes is an error.
func stdZlib(z []byte, size int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(size)+1))
	if err == nil && len(out) > size {
		err = errors.New("too long")
	}
	return out, err
}

// stdDeflate reads up to size bytes of z with compress/flate as
// io.ReadFull would, keeping the reader's own error: nil when size bytes
// came, io.EOF when the stream ended cleanly before.
func stdDeflate(z []byte, size int) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(z))
	out := make([]byte, size)
	n := 0
	for n < size {
		k, err := fr.Read(out[n:])
		n += k
		if err != nil {
			return out[:n], err
		}
	}
	return out, nil
}

// FuzzDeflate compares Deflate with compress/flate on arbitrary input and
// buffer sizes: the same bytes when compress/flate fills the buffer or
// ends cleanly, an error when it fails.
func FuzzDeflate(f *testing.F) {
	for _, data := range samples() {
		for _, lv := range levels {
			z := deflate(f, data[:min(len(data), 3000)], lv)
			f.Add(z, uint16(min(len(data), 3000)))
		}
	}
	var d Decoder
	f.Fuzz(func(t *testing.T, z []byte, size uint16) {
		want, werr := stdDeflate(z, int(size))
		dst := make([]byte, size)
		n, err := d.Deflate(dst, z)
		switch {
		// compress/flate may read the next block header before handing
		// over data that fills the buffer, and fail there; like QEMU's
		// zlib use, Deflate stops once the buffer is full.
		case werr == nil || werr == io.EOF || len(want) == int(size):
			if err != nil || !bytes.Equal(dst[:n], want) {
				t.Fatalf("stream %x into %d: ours %d bytes, %v; compress/flate %d bytes, %v", z, size, n, err, len(want), werr)
			}
		case err == nil:
			t.Fatalf("stream %x into %d: ours %d bytes without error; compress/flate: %v", z, size, n, werr)
		}
	})
}

// FuzzZlib compares Zlib with compress/zlib on arbitrary input.
func FuzzZlib(f *testing.F) {
	for _, data := range samples() {
		for _, lv := range levels {
			f.Add(zlibOf(f, data[:min(len(data), 3000)], lv), uint16(min(len(data), 3000)))
		}
	}
	var d Decoder
	f.Fuzz(func(t *testing.T, z []byte, size uint16) {
		compare(t, &d, "fuzz", z, int(size))
	})
}

// BenchmarkDecode decodes 64 KiB clusters of text (literal-heavy, the
// slow case) and mixed data with this package and compress/flate.
func BenchmarkDecode(b *testing.B) {
	s := samples()
	for _, name := range []string{"text", "mixed"} {
		data := s[name][:64<<10]
		z := deflate(b, data, flate.DefaultCompression)
		dst := make([]byte, len(data))
		b.Run(name+"/inflate", func(b *testing.B) {
			var d Decoder
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := d.Deflate(dst, z); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/compress-flate", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var br bytes.Reader
			fr := flate.NewReader(&br)
			for b.Loop() {
				br.Reset(z)
				fr.(flate.Resetter).Reset(&br, nil)
				if _, err := io.ReadFull(fr, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
