package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// stillServes checks that a fresh, well-behaved client gets correct data.
func stillServes(t *testing.T, sock string, img []byte) {
	t.Helper()
	cl := dialGo(t, sock, "")
	errno, data := cl.do(CmdRead, 0, 4096, 8192, nil)
	if errno != 0 || !bytes.Equal(data, img[4096:4096+8192]) {
		t.Fatalf("fresh client: errno %d, data match %v", errno, bytes.Equal(data, img[4096:4096+8192]))
	}
	cl.send(CmdDisc, 0, 8, 0, 0, nil)
	if !connClosed(t, cl) {
		t.Fatal("DISC: connection not closed")
	}
}

// connClosed reports whether the server closed the connection.
func connClosed(t *testing.T, cl *client) bool {
	t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := cl.c.Read(b[:])
	return err == io.EOF
}

func TestHostileRequests(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "h.img", size, 11)
	img := patternBytes(11, size)
	sock := startServer(t, oneExport(openFileDisk(t, path), false))
	sum := testutil.FileSHA256(t, path)

	cl := dialGo(t, sock, "")
	if cl.size != size {
		t.Fatalf("size %d", cl.size)
	}
	cases := []struct {
		name    string
		typ     Cmd
		flags   uint16
		off     uint64
		length  uint32
		payload bool
		want    uint32
	}{
		{"read past end", CmdRead, 0, size - 100, 4096, false, errnoInval},
		{"read offset overflow", CmdRead, 0, ^uint64(0) - 10, 4096, false, errnoInval},
		{"write past end", CmdWrite, 0, size - 100, 4096, true, errnoInval},
		{"write far past end", CmdWrite, 0, 1 << 40, 512, true, errnoInval},
		{"oversized read", CmdRead, 0, 0, MaxBlockSize + 1, false, errnoInval},
		{"trim past end", CmdTrim, 0, size, 1, false, errnoInval},
		{"zero past end", CmdWriteZeroes, 0, 0, size + 1, false, errnoInval},
		{"cache past end", CmdCache, 0, size + 4096, 1, false, errnoInval},
		{"unknown command", Cmd(42), 0, 0, 512, false, errnoInval},
		{"block status unsupported", CmdBlockStatus, 0, 0, 512, false, errnoInval},
		{"unknown flag", CmdRead, 1 << 9, 0, 512, false, errnoInval},
		{"no-hole on write", CmdWrite, cmdFlagNoHole, 0, 512, true, errnoInval},
		{"DF flag not negotiated", CmdRead, cmdFlagDF, 0, 512, false, errnoInval},
	}
	for _, tc := range cases {
		var payload []byte
		if tc.payload {
			payload = bytes.Repeat([]byte{0xee}, int(tc.length))
		}
		errno, _ := cl.do(tc.typ, tc.flags, tc.off, tc.length, payload)
		if errno != tc.want {
			t.Errorf("%s: errno %d, want %d", tc.name, errno, tc.want)
		}
	}
	// An oversized write's payload is drained; the same connection works.
	big := make([]byte, MaxBlockSize+4096)
	errno, _ := cl.do(CmdWrite, 0, 0, uint32(len(big)), big)
	if errno != errnoInval {
		t.Errorf("oversized write: errno %d", errno)
	}
	if errno, data := cl.do(CmdRead, 0, size-4096, 4096, nil); errno != 0 || !bytes.Equal(data, img[size-4096:]) {
		t.Fatalf("read after rejected requests: errno %d, match %v", errno, bytes.Equal(data, img[size-4096:]))
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("rejected writes changed the backing file")
	}

	// A write too big to drain, then bad magic: the server closes those
	// connections and keeps serving others.
	cl2 := dialGo(t, sock, "")
	cl2.send(CmdWrite, 0, 1, 0, 0xffffffff, nil)
	if !connClosed(t, cl2) {
		t.Error("4 GiB write: connection not closed")
	}
	cl3 := dialGo(t, sock, "")
	bad := encodeRequest(CmdRead, 0, 1, 0, 512)
	bad[0] ^= 0xff
	cl3.c.Write(bad)
	if !connClosed(t, cl3) {
		t.Error("bad magic: connection not closed")
	}
	stillServes(t, sock, img)
}

func TestHostileReadOnlyWrites(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "ro.img", size, 12)
	sum := testutil.FileSHA256(t, path)
	sock := startServer(t, oneExport(openFileDisk(t, path), true))
	cl := dialGo(t, sock, "")
	if cl.flags&tflagReadOnly == 0 {
		t.Fatal("READ_ONLY not advertised")
	}
	for _, typ := range []Cmd{CmdWrite, CmdTrim, CmdWriteZeroes} {
		var payload []byte
		if typ == CmdWrite {
			payload = make([]byte, 4096)
		}
		if errno, _ := cl.do(typ, 0, 0, 4096, payload); errno != errnoPerm {
			t.Errorf("%v on read-only export: errno %d, want EPERM", typ, errno)
		}
	}
	stillServes(t, sock, patternBytes(12, size))
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("read-only export was written")
	}
}

func TestHostileHandshakes(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "hs.img", size, 13)
	sock := startServer(t, oneExport(openFileDisk(t, path), false))
	for name, send := range map[string][]byte{
		"garbage":              []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"unknown client flags": {0, 0, 0, 0x81},
		"bad option magic":     append([]byte{0, 0, 0, 1}, bytes.Repeat([]byte{0x55}, 16)...),
		"huge option":          append(goHandshake("")[:12], 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff),
		"export name unknown":  exportNameOpt("nope"),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, sock)
			c.Write(send)
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("server did not close: %v", err)
			}
		})
	}
	// Options that get error replies keep the negotiation going.
	c := dialRaw(t, sock)
	io.ReadFull(c, make([]byte, serverGreetingLen))
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, clientFixedNewstyle)
	opt := func(o uint32, data []byte) {
		binary.Write(&b, binary.BigEndian, ihaveOpt)
		binary.Write(&b, binary.BigEndian, o)
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.Write(data)
	}
	opt(99, []byte("x"))                      // unknown
	opt(optStartTLS, nil)                     // no TLS configured
	opt(optInfo, []byte{0, 0, 0, 9, 'a'})     // name length beyond the data
	opt(optList, []byte{1})                   // LIST takes no data
	opt(optGo, []byte{0, 0, 0, 1, 'z', 0, 0}) // unknown export
	opt(optStructuredRepl, []byte{0})         // takes no data
	opt(optStructuredRepl, nil)
	opt(optStructuredRepl, nil) // repeated
	opt(optAbort, nil)
	c.Write(b.Bytes())
	want := []uint32{repErrUnsup, repErrUnsup, repErrInvalid, repErrInvalid, repErrUnknown, repErrInvalid, repAck, repErrInvalid, repAck}
	for i, w := range want {
		var h [optReplyHeaderLen]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint32(h[12:]); got != w {
			t.Errorf("reply %d: type %#x, want %#x", i, got, w)
		}
		io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(h[16:])))
	}
	stillServes(t, sock, patternBytes(13, size))
}

func exportNameOpt(name string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, clientFixedNewstyle)
	binary.Write(&b, binary.BigEndian, ihaveOpt)
	binary.Write(&b, binary.BigEndian, optExportName)
	binary.Write(&b, binary.BigEndian, uint32(len(name)))
	b.WriteString(name)
	return b.Bytes()
}

// TestLibnbdHostile drives libnbd (nbdsh's python module) with its safety
// checks turned off, so the malformed requests reach the wire from a real
// client library.
func TestLibnbdHostile(t *testing.T) {
	py := testutil.RequirePython3Module(t, "nbd")
	const size = 1 << 20
	path := makeImage(t, "sh.img", size, 14)
	sum := testutil.FileSHA256(t, path)
	sock := startServer(t, oneExport(openFileDisk(t, path), false))
	script := `
h.set_strict_mode(0)
h.connect_uri(uri)
for name, fn in [
    ("read past end", lambda: h.pread(4096, size - 100)),
    ("write past end", lambda: h.pwrite(b"x" * 4096, size - 100)),
    ("trim past end", lambda: h.trim(4096, size)),
    ("zero past end", lambda: h.zero(8192, size - 4096)),
]:
    try:
        fn()
        print("NOERROR", name)
    except nbd.Error as e:
        print("ERROR", name, e.errnum)
assert h.pread(512, 0) == open(path, "rb").read(512)
print("OK")
`
	prog := "import nbd\nh = nbd.NBD()\nuri = " + pyStr(unixURI(sock)) + "\nsize = 1048576\npath = " + pyStr(path) + script
	out := string(run(t, py, "-c", prog))
	for _, want := range []string{"ERROR read past end 22", "ERROR write past end 22", "ERROR trim past end 22", "ERROR zero past end 22", "OK"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("libnbd output lacks %q:\n%s", want, out)
		}
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("rejected writes changed the backing file")
	}
	stillServes(t, sock, patternBytes(14, size))
}

func pyStr(s string) string { return "'" + s + "'" }

// TestConcurrentIntegrity keeps many requests in flight on each of several
// connections, every block written with data derived from its index and
// generation, and checks every read against that model.
func TestConcurrentIntegrity(t *testing.T) {
	const (
		size   = 8 << 20
		block  = 16 << 10
		blocks = size / block
		conns  = 4
		rounds = 3
	)
	path := makeImage(t, "c.img", size, 15)
	sock := startServer(t, oneExport(openFileDisk(t, path), false))
	blockData := func(b, gen int) []byte { return patternBytes(uint64(b)<<8|uint64(gen), block) }

	var wg sync.WaitGroup
	for ci := 0; ci < conns; ci++ {
		wg.Add(1)
		go func(ci int) {
			defer wg.Done()
			cl := dialGo(t, sock, "")
			mine := []int{}
			for b := ci; b < blocks; b += conns {
				mine = append(mine, b)
			}
			for gen := 1; gen <= rounds; gen++ {
				// Pipeline every write, then every read, without waiting.
				go func() {
					for i, b := range mine {
						cl.send(CmdWrite, 0, uint64(i), uint64(b*block), block, blockData(b, gen))
					}
				}()
				seen := map[uint64]bool{}
				for range mine {
					errno, h, err := cl.reply()
					if err != nil || errno != 0 || seen[h] || h >= uint64(len(mine)) {
						t.Errorf("conn %d write reply: errno %d handle %d err %v", ci, errno, h, err)
						return
					}
					seen[h] = true
				}
				go func() {
					for i, b := range mine {
						cl.send(CmdRead, 0, uint64(i), uint64(b*block), block, nil)
					}
				}()
				buf := make([]byte, block)
				for range mine {
					errno, h, err := cl.reply()
					if err != nil || errno != 0 || h >= uint64(len(mine)) {
						t.Errorf("conn %d read reply: errno %d handle %d err %v", ci, errno, h, err)
						return
					}
					if _, err := io.ReadFull(cl.c, buf); err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(buf, blockData(mine[h], gen)) {
						t.Errorf("conn %d block %d gen %d: wrong data", ci, mine[h], gen)
						return
					}
				}
			}
			cl.do(CmdFlush, 0, 0, 0, nil)
		}(ci)
	}
	wg.Wait()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < blocks; b++ {
		if !bytes.Equal(got[b*block:(b+1)*block], blockData(b, rounds)) {
			t.Fatalf("backing block %d has wrong data", b)
		}
	}
}
