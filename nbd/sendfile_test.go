package nbd

import (
	"context"
	"errors"
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

// TestSendfileRepliesMatchSource serves a source file, whose large reads
// leave with sendfile, over a unix socket and over TCP, with simple and
// with structured replies, and checks every byte libnbd receives.
func TestSendfileRepliesMatchSource(t *testing.T) {
	py := testutil.RequirePython3Module(t, "nbd")
	const size = 9<<20 + 4097 // odd, so reads end at an unaligned end of file
	path := makeImage(t, "src.img", size, 61)
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// TestSendfileShortFileBreaksConnection checks that a source file that
// shrank under the server ends the connection instead of sending a reply
// whose header promised bytes that never come.
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
	cl.send(CmdRead, 0, 1, uint64(size-(1<<20)), 1<<20, nil)
	cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, cl.c)
	if err != nil {
		t.Fatalf("after %d bytes: %v (want the server to close the connection)", got, err)
	}
	if got >= simpleReplyLen+1<<20 {
		t.Fatalf("got a whole %d-byte reply for bytes the file no longer has", got)
	}
}
