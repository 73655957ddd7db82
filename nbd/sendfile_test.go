package nbd

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

// mixedReadsScript keeps up to 32 reads of mixed sizes in flight through
// python3-libnbd, so replies sent with sendfile (64 KiB and up) interleave
// with replies copied by workers, and checks every byte against the file.
const mixedReadsScript = `
import nbd, random, sys
uri, path, structured = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
data = open(path, "rb").read()
h = nbd.NBD()
h.set_request_structured_replies(structured)
h.connect_uri(uri)
assert h.get_structured_replies_negotiated() == structured
size = h.get_size()
assert size == len(data), (size, len(data))
rnd = random.Random(7)
sizes = [1, 4096, 65535, 65536, 65537, 262144, 1 << 20, 3 << 20]
todo = []
for i in range(600):
    n = min(rnd.choice(sizes), size)
    off = rnd.randrange(0, size - n + 1)
    todo.append((off, n))
todo += [(size - 65536, 65536), (0, size if size <= 32 << 20 else 32 << 20)]
inflight = {}
bad = 0
done = 0
while todo or inflight:
    while todo and len(inflight) < 32:
        off, n = todo.pop()
        buf = nbd.Buffer(n)
        inflight[h.aio_pread(buf, off)] = (buf, off, n)
    h.poll(-1)
    for c in [c for c in inflight if h.aio_command_completed(c)]:
        buf, off, n = inflight.pop(c)
        if buf.to_bytearray() != data[off:off+n]:
            bad += 1
            print("MISMATCH", off, n)
        done += 1
print("READS", done, "BAD", bad)
h.shutdown()
`

// TestSendfileRepliesMatchSource serves a source file, whose pipelined
// large reads leave with sendfile and whose cached small ones are answered
// in the request loop, over a unix socket and over TCP, with simple and
// with structured replies, and checks every byte libnbd receives. The file
// lies on the temp dir's file system, which honours RWF_NOWAIT, and on
// tmpfs, which refuses it but is read in the loop all the same.
func TestSendfileRepliesMatchSource(t *testing.T) {
	for _, dir := range []string{"", "/dev/shm"} {
		name := "tempdir"
		if dir != "" {
			name = "tmpfs"
			if _, err := os.Stat(dir); err != nil {
				t.Logf("skipping tmpfs: %v", err)
				continue
			}
		}
		t.Run(name, func(t *testing.T) { testFileReplies(t, dir) })
	}
}

func testFileReplies(t *testing.T, dir string) {
	py := testutil.RequirePython3Module(t, "nbd")
	const size = 9<<20 + 4097 // odd, so reads end at an unaligned end of file
	path := makeImage(t, "src.img", size, 61)
	if dir != "" {
		d, err := os.MkdirTemp(dir, "kvmify-nbd-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		p := filepath.Join(d, "src.img")
		if err := os.Rename(path, p); err != nil {
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path = p
	}
	sum := testutil.FileSHA256(t, path)
	script := filepath.Join(t.TempDir(), "reads.py")
	if err := os.WriteFile(script, []byte(mixedReadsScript), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	uris := map[string]string{
		"unix": unixURI(startServer(t, oneExport(src, false))),
		"tcp":  "nbd://" + startTCPServer(t, oneExport(src, false)) + "/",
	}
	for name, uri := range uris {
		for _, structured := range []string{"0", "1"} {
			out := string(run(t, py, script, uri, path, structured))
			if !strings.Contains(out, "READS 602 BAD 0\n") {
				t.Errorf("%s, structured=%s: %s", name, structured, out)
			}
		}
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}

// startTCPServer serves srv on a loopback TCP port until the test ends.
func startTCPServer(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, srv, l)
	return l.Addr().String()
}

// TestSendfileShortFileBreaksConnection checks that a source file that
// shrank under the server ends the connection instead of sending a reply
// whose header promised bytes that never come, and that a lone read of the
// missing bytes, which is copied, gets an error reply instead.
func TestSendfileShortFileBreaksConnection(t *testing.T) {
	const size = 4 << 20
	path := makeImage(t, "shrinks.img", size, 62)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sock := startServer(t, oneExport(src, true))
	cl := dialGo(t, sock, "")
	if errno, _ := cl.do(CmdRead, 0, 0, 1<<20, nil); errno != 0 {
		t.Fatalf("read before truncation: errno %d", errno)
	}
	if err := os.Truncate(path, size/2); err != nil {
		t.Fatal(err)
	}
	if errno, _ := cl.do(CmdRead, 0, size-(1<<20), 1<<20, nil); errno != errnoIO {
		t.Fatalf("lone read past the shrunk end: errno %d, want EIO", errno)
	}
	// Two reads in one write: the first is pipelined, so it goes out with
	// sendfile (a lone one is copied and gets an error reply instead).
	reqs := append(encodeRequest(CmdRead, 0, 1, uint64(size-(1<<20)), 1<<20), encodeRequest(CmdRead, 0, 2, 0, 4096)...)
	if _, err := cl.c.Write(reqs); err != nil {
		t.Fatal(err)
	}
	cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, cl.c)
	if err != nil {
		t.Fatalf("after %d bytes: %v (want the server to close the connection)", got, err)
	}
	if got >= simpleReplyLen+1<<20 {
		t.Fatalf("got a whole %d-byte reply for bytes the file no longer has", got)
	}
}

// TestPipelinedReadsThenDisc sends a burst of cached reads and DISC in one
// write: replies the request loop holds to batch must all go out before
// the connection closes.
func TestPipelinedReadsThenDisc(t *testing.T) {
	const size = 4 << 20
	path := makeImage(t, "burst.img", size, 63)
	img := patternBytes(63, size)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sock := startServer(t, oneExport(src, true))
	for _, n := range []uint32{4096, 200 << 10} { // copied in the loop; sent with sendfile
		cl := dialGo(t, sock, "")
		const reads = 100
		var burst []byte
		for i := range reads {
			burst = append(burst, encodeRequest(CmdRead, 0, uint64(i), uint64(i)*8192%(size-uint64(n)), n)...)
		}
		burst = append(burst, encodeRequest(CmdDisc, 0, 0, 0, 0)...)
		if _, err := cl.c.Write(burst); err != nil {
			t.Fatal(err)
		}
		cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		seen := map[uint64]bool{}
		for range reads {
			errno, h, err := cl.reply()
			if err != nil {
				t.Fatalf("%d-byte reads: after %d replies: %v", n, len(seen), err)
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(cl.c, data); err != nil {
				t.Fatal(err)
			}
			off := h * 8192 % (size - uint64(n))
			if errno != 0 || h >= reads || seen[h] || !bytes.Equal(data, img[off:off+uint64(n)]) {
				t.Fatalf("%d-byte reads: reply for handle %d: errno %d, repeated %v, data ok %v", n, h, errno, seen[h], bytes.Equal(data, img[off:off+uint64(n)]))
			}
			seen[h] = true
		}
		if !connClosed(t, cl) {
			t.Fatalf("%d-byte reads: connection open after DISC", n)
		}
	}
}
