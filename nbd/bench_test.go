package nbd

import (
	"bufio"
	"encoding/binary"
	"io"
	"os/exec"

	"github.com/kvmify/kvmify/internal/testutil"
	"testing"
)

// benchIO keeps qd requests of n bytes in flight on one connection for
// b.N requests, measuring the server's per-request cost over a unix socket
// with the backend in the page cache.
func benchIO(b *testing.B, typ Cmd, n uint32, qd int, random bool) {
	benchIOReplies(b, typ, n, qd, random, false)
}

// benchIOReplies is benchIO with structured replies negotiated or not; the
// structured variant is for reads, the only replies it parses.
func benchIOReplies(b *testing.B, typ Cmd, n uint32, qd int, random, structured bool) {
	const size = 64 << 20
	path := makeImage(b, "bench.img", size, 41)
	sock := startServer(b, oneExport(openFileDisk(b, path), false))
	var cl *client
	if structured {
		cl = structuredClient(b, sock)
	} else {
		cl = dialGo(b, sock, "")
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	slots := make(chan struct{}, qd)
	payload := make([]byte, n)
	errc := make(chan error, 1)
	b.ResetTimer()
	go func() {
		w := bufio.NewWriterSize(cl.c, 1<<20)
		var hdr [requestLen]byte
		x := uint64(0x9e3779b97f4a7c15)
		for i := 0; i < b.N; i++ {
			slots <- struct{}{}
			off := uint64(i) * uint64(n) % (size - uint64(n) + 1)
			if random {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				off = x % (size / uint64(n)) * uint64(n)
			}
			binary.BigEndian.PutUint32(hdr[0:], requestMagic)
			binary.BigEndian.PutUint16(hdr[6:], uint16(typ))
			binary.BigEndian.PutUint64(hdr[8:], uint64(i))
			binary.BigEndian.PutUint64(hdr[16:], off)
			binary.BigEndian.PutUint32(hdr[24:], n)
			w.Write(hdr[:])
			if typ == CmdWrite {
				w.Write(payload)
			}
			if len(slots) == cap(slots) || i == b.N-1 {
				if err := w.Flush(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	r := bufio.NewReaderSize(cl.c, 1<<20)
	var rep [simpleReplyLen]byte
	var srep [structReplyLen]byte
	for i := 0; i < b.N; i++ {
		if structured {
			if _, err := io.ReadFull(r, srep[:]); err != nil {
				b.Fatal(err)
			}
			if binary.BigEndian.Uint32(srep[0:]) != structRepMagic || binary.BigEndian.Uint16(srep[6:]) == replyTypeError {
				b.Fatalf("reply %x", srep)
			}
			if _, err := r.Discard(int(binary.BigEndian.Uint32(srep[16:]))); err != nil {
				b.Fatal(err)
			}
			<-slots
			continue
		}
		if _, err := io.ReadFull(r, rep[:]); err != nil {
			b.Fatal(err)
		}
		if binary.BigEndian.Uint32(rep[4:]) != 0 {
			b.Fatalf("errno %d", binary.BigEndian.Uint32(rep[4:]))
		}
		if typ == CmdRead {
			if _, err := r.Discard(int(n)); err != nil {
				b.Fatal(err)
			}
		}
		<-slots
	}
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkRead4KRandomQD1(b *testing.B)    { benchIO(b, CmdRead, 4096, 1, true) }
func BenchmarkRead4KRandomQD32(b *testing.B)   { benchIO(b, CmdRead, 4096, 32, true) }
func BenchmarkRead256KSeqQD8(b *testing.B)     { benchIO(b, CmdRead, 256<<10, 8, false) }
func BenchmarkWrite64KRandomQD16(b *testing.B) { benchIO(b, CmdWrite, 64<<10, 16, true) }

// The read benchmarks again with structured replies negotiated, as nbdcopy
// and QEMU do: each reply is one OFFSET_DATA chunk.
func BenchmarkRead4KRandomQD1Structured(b *testing.B) {
	benchIOReplies(b, CmdRead, 4096, 1, true, true)
}
func BenchmarkRead256KSeqQD8Structured(b *testing.B) {
	benchIOReplies(b, CmdRead, 256<<10, 8, false, true)
}

// BenchmarkNbdcopySeqRead has nbdcopy (multi-conn, 64 requests in flight per
// connection) read the whole export, as the side-by-side harness does.
func BenchmarkNbdcopySeqRead(b *testing.B) {
	nbdcopy := testutil.RequireTool(b, "nbdcopy")
	const size = 256 << 20
	path := makeImage(b, "seq.img", size, 42)
	sock := startServer(b, oneExport(openFileDisk(b, path), true))
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command(nbdcopy, "--no-extents", unixURI(sock), "null:").CombinedOutput(); err != nil {
			b.Fatalf("nbdcopy: %v\n%s", err, out)
		}
	}
}
