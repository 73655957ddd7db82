package nbd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

// pipelinedWritesScript keeps up to 32 writes in flight, whole 64 KiB
// blocks (done in the request loop) mixed with unaligned ones (which need a
// block from the source and go to workers), then reads the disk back and
// compares it with the model it kept.
const pipelinedWritesScript = `
import nbd, random, sys
uri, path = sys.argv[1], sys.argv[2]
model = bytearray(open(path, "rb").read())
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
rnd = random.Random(11)
todo = []
for i in range(800):
    if rnd.random() < 0.6:
        n = 65536 * rnd.choice([1, 1, 2, 4])
        off = rnd.randrange(0, (size - n) // 65536 + 1) * 65536
    else:
        n = rnd.choice([1, 512, 4096, 70000])
        off = rnd.randrange(0, size - n + 1)
    todo.append((off, bytes([i % 251 + 1]) * n))
# Writes in flight together never overlap, as their order is the server's
# to choose; windows follow each other, so the model applies them in order.
i = 0
while i < len(todo):
    window, ranges = [], []
    while i < len(todo) and len(window) < 32:
        off, data = todo[i]
        if any(o < off + len(data) and off < o + n for o, n in ranges):
            break
        ranges.append((off, len(data)))
        window.append(h.aio_pwrite(data, off))
        model[off:off+len(data)] = data
        i += 1
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in window:
        h.aio_command_completed(c)  # raises if the write failed
h.flush()
print("WRITES", len(todo), "EQUAL", h.pread(size, 0) == bytes(model))
h.shutdown()
`

// TestPipelinedWritesThroughOverlay writes through an overlay, whose whole
// block writes the server does in its request loop, and checks the disk
// read back against a model and the source against its hash.
func TestPipelinedWritesThroughOverlay(t *testing.T) {
	py := testutil.RequirePython3Module(t, "nbd")
	const size = 12<<20 + 4096
	path := makeImage(t, "src.img", size, 71)
	sum := testutil.FileSHA256(t, path)
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	ov, err := overlay.Open(filepath.Join(t.TempDir(), "ov"), src, overlay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ov.Close() })
	script := filepath.Join(t.TempDir(), "writes.py")
	if err := os.WriteFile(script, []byte(pipelinedWritesScript), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := startServer(t, oneExport(ov, false))
	out := string(run(t, py, script, unixURI(sock), path))
	if !strings.Contains(out, "WRITES 800 EQUAL True\n") {
		t.Fatalf("libnbd: %s", out)
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}
