package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand"
	"net"
	"testing"
	"testing/iotest"
)

// requestStream is n records of a 4-byte length and that many bytes, the
// shape of NBD requests with payloads.
func requestStream(rng *rand.Rand, n int, sizes []int) ([]byte, [][]byte) {
	var all []byte
	var payloads [][]byte
	for range n {
		p := make([]byte, sizes[rng.Intn(len(sizes))])
		rng.Read(p)
		all = binary.BigEndian.AppendUint32(all, uint32(len(p)))
		all = append(all, p...)
		payloads = append(payloads, p)
	}
	return all, payloads
}

// readRequests reads the stream back the way the request loop does: the
// length with Read, the payload with Peek and Discard, or with Read when it
// is larger than the buffer.
func readRequests(t *testing.T, b *requestReader, payloads [][]byte) {
	t.Helper()
	for i, want := range payloads {
		var hdr [4]byte
		if _, err := io.ReadFull(b, hdr[:]); err != nil {
			t.Fatalf("record %d: header: %v", i, err)
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n != len(want) {
			t.Fatalf("record %d: length %d, want %d", i, n, len(want))
		}
		if n > b.Size() {
			got := make([]byte, n)
			if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("record %d: large payload differs (err %v)", i, err)
			}
			continue
		}
		got, err := b.Peek(n)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("record %d: peeked payload differs (err %v)", i, err)
		}
		if i%3 == 0 && n > 0 {
			// Peeking again must not move or change it.
			again, _ := b.Peek(n)
			if &again[0] != &got[0] {
				t.Fatalf("record %d: second Peek moved the payload", i)
			}
		}
		if m, err := b.Discard(n); m != n || err != nil {
			t.Fatalf("record %d: Discard %d, %v", i, m, err)
		}
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the stream: %v, want EOF", err)
	}
}

func TestRequestReaderStreams(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	all, payloads := requestStream(rng, 300, []int{0, 1, 512, 4096, 65536, 65537, 200000, 300000})
	for _, tc := range []struct {
		name string
		rd   func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(all) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(all)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(all)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readRequests(t, newRequestReader(tc.rd(), 256<<10), payloads)
		})
	}
}

// Over a socket, 64 KiB payloads read in place are moved to the front of
// the buffer only when they would not fit before its end: a small share of
// what they carry, where bufio.Reader moves nearly every one.
func TestRequestReaderMovesLittle(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	all, payloads := requestStream(rng, 2000, []int{65536 + 28})
	a, b := net.Pipe()
	go func() {
		for len(all) > 0 {
			n := min(len(all), 1+rng.Intn(300000))
			a.Write(all[:n])
			all = all[n:]
		}
		a.Close()
	}()
	r := newRequestReader(b, readBufferSize)
	readRequests(t, r, payloads)
	var total int64
	for _, p := range payloads {
		total += int64(len(p))
	}
	if r.moved*10 > total {
		t.Fatalf("moved %d of %d payload bytes, want under a tenth", r.moved, total)
	}
	t.Logf("moved %d of %d payload bytes", r.moved, total)
}

func TestRequestReaderErrors(t *testing.T) {
	r := newRequestReader(bytes.NewReader(make([]byte, 100)), 64)
	if _, err := r.Peek(65); err != errPeekTooLarge {
		t.Fatalf("Peek beyond the buffer: %v", err)
	}
	p, err := r.Peek(64)
	if err != nil || len(p) != 64 {
		t.Fatalf("Peek(64): %d bytes, %v", len(p), err)
	}
	r.Discard(64)
	// 36 bytes remain: a Peek for more returns them with the end.
	p, err = r.Peek(50)
	if err != io.EOF || len(p) != 36 {
		t.Fatalf("Peek past the end: %d bytes, %v", len(p), err)
	}
	if m, err := r.Discard(50); m != 36 || err != io.EOF {
		t.Fatalf("Discard past the end: %d, %v", m, err)
	}
}
