package nbd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

// sparseRun is one piece of a sparse test image: written random data,
// written zeros (allocated, so data to SEEK_DATA), or nothing (a hole).
type sparseRun struct {
	off, n int64
	zeros  bool
}

// makeSparseImage creates a file of size bytes that is a hole except for
// runs, which include unaligned ones and the unaligned tail.
func makeSparseImage(t *testing.T, name string, size int64, runs []sparseRun) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, r := range runs {
		b := make([]byte, r.n)
		if !r.zeros {
			b = patternBytes(uint64(100+i), int(r.n))
		}
		if _, err := f.WriteAt(b, r.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return p
}

// mixedImage has holes, data, written zeros, unaligned data and a partial
// last block.
func mixedImage(t *testing.T) (string, int64) {
	const size = 24<<20 + 1536
	return makeSparseImage(t, "mixed.img", size, []sparseRun{
		{off: 192 << 10, n: 128 << 10},
		{off: 2560 << 10, n: 192 << 10, zeros: true},
		{off: 5<<20 + 100, n: 5000},
		{off: 8 << 20, n: 1 << 20},
		{off: 9 << 20, n: 64 << 10, zeros: true},
		{off: 12<<20 + 4096, n: 4096},
		{off: size - 3000, n: 3000},
	}), size
}

// hugeImage has a hole longer than a descriptor's u32 length can say.
func hugeImage(t *testing.T) (string, int64) {
	const size = 6<<30 + 4096
	return makeSparseImage(t, "huge.img", size, []sparseRun{
		{off: 1 << 20, n: 4096},
		{off: 5<<30 + 512, n: 8192},
		{off: size - 4096, n: 4096, zeros: true},
	}), size
}

// fileState identifies a file's content cheaply: its sha256 when small,
// else size and modification time (hashing gigabytes of holes takes a
// minute).
func fileState(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= 64<<20 {
		return testutil.FileSHA256(t, path)
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
}

// mapRun is one range of an allocation map with its base:allocation flags.
type mapRun struct {
	Off, Len int64
	Flags    uint32
}

// mergeRuns joins adjacent runs with equal flags, so maps that split
// ranges differently (descriptor limits, u32 lengths) compare equal when
// they say the same thing about every byte.
func mergeRuns(in []mapRun) []mapRun {
	var out []mapRun
	for _, r := range in {
		if k := len(out) - 1; k >= 0 && out[k].Flags == r.Flags && out[k].Off+out[k].Len == r.Off {
			out[k].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	return out
}

// nbdinfoMap runs nbdinfo --map on uri and parses "offset length type ...".
func nbdinfoMap(t *testing.T, uri string) []mapRun {
	t.Helper()
	return mergeRuns(parseMap(t, run(t, testutil.RequireTool(t, "nbdinfo"), "--map", uri)))
}

// nbdkitRun serves path read-only with nbdkit's file plugin, the reference
// server, and runs cmd with $uri set to its URI.
func nbdkitRun(t *testing.T, path, cmd string) []byte {
	t.Helper()
	return run(t, testutil.RequireTool(t, "nbdkit"), "-r", "-U", "-", "file", path, "--run", cmd)
}

func checkCovers(t *testing.T, what string, runs []mapRun, size int64) {
	t.Helper()
	if len(runs) == 0 || runs[0].Off != 0 || runs[len(runs)-1].Off+runs[len(runs)-1].Len != size {
		t.Fatalf("%s does not cover the %d-byte export: %v", what, size, runs)
	}
}

func serveSource(t *testing.T, path string) string {
	t.Helper()
	src, err := disk.OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return startServer(t, oneExport(src, false))
}

// TestNbdinfoMapMatchesNbdkit serves real sparse files and compares the
// allocation map nbdinfo reads from this server with the one it reads from
// nbdkit's file plugin on the same file. The huge image has a hole longer
// than a descriptor's u32 length.
func TestNbdinfoMapMatchesNbdkit(t *testing.T) {
	mixed, mixedSize := mixedImage(t)
	huge, hugeSize := hugeImage(t)
	for _, tc := range []struct {
		name string
		path string
		size int64
	}{{"mixed", mixed, mixedSize}, {"huge", huge, hugeSize}} {
		t.Run(tc.name, func(t *testing.T) {
			before := fileState(t, tc.path)
			sock := serveSource(t, tc.path)
			ours := nbdinfoMap(t, unixURI(sock))
			theirs := mergeRuns(parseMap(t, nbdkitRun(t, tc.path, `nbdinfo --map "$uri"`)))
			checkCovers(t, "our map", ours, tc.size)
			if len(ours) < 3 {
				t.Fatalf("map %v has no holes: the test image is not sparse", ours)
			}
			if !equalRuns(ours, theirs) {
				t.Errorf("nbdinfo --map differs from nbdkit's\nours:   %v\nnbdkit: %v", ours, theirs)
			}
			if fileState(t, tc.path) != before {
				t.Fatal("source changed")
			}
		})
	}
}

func parseMap(t *testing.T, out []byte) []mapRun {
	t.Helper()
	var runs []mapRun
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		fl, err3 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		runs = append(runs, mapRun{off, n, uint32(fl)})
	}
	return runs
}

func equalRuns(a, b []mapRun) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNbdinfoJSONStructured checks what nbdinfo sees negotiated.
func TestNbdinfoJSONStructured(t *testing.T) {
	path, _ := mixedImage(t)
	sock := serveSource(t, path)
	out := run(t, testutil.RequireTool(t, "nbdinfo"), "--json", unixURI(sock))
	var v struct {
		Structured bool `json:"structured"`
		Exports    []struct {
			Contexts []string `json:"contexts"`
			CanDF    bool     `json:"can_df"`
		} `json:"exports"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("nbdinfo json: %v\n%s", err, out)
	}
	if !v.Structured || len(v.Exports) != 1 || !v.Exports[0].CanDF || strings.Join(v.Exports[0].Contexts, ",") != metaBaseAllocation {
		t.Errorf("nbdinfo --json: %s", out)
	}
}

// TestNbdcopySparseEqualsSource copies the export with and without block
// status and compares the copies with the source byte for byte. With -S 0
// (no zero detection in nbdcopy) only the extents can keep the copy
// sparse, which shows nbdcopy used them.
func TestNbdcopySparseEqualsSource(t *testing.T) {
	nbdcopy := testutil.RequireTool(t, "nbdcopy")
	path, size := mixedImage(t)
	sum := testutil.FileSHA256(t, path)
	sock := serveSource(t, path)
	for _, extents := range []bool{true, false} {
		out := filepath.Join(t.TempDir(), "copy.img")
		args := []string{"-S", "0", unixURI(sock), out}
		if !extents {
			args = append([]string{"--no-extents"}, args...)
		}
		run(t, nbdcopy, args...)
		if got := testutil.FileSHA256(t, out); got != sum {
			t.Errorf("nbdcopy (extents %v): copy sha256 %s, source %s", extents, got, sum)
		}
		a := allocated(t, out)
		// nbdcopy writes data extents in its own block size, so the copy
		// holds more than the source's few data blocks, but far from all.
		if extents && a > size/4 {
			t.Errorf("nbdcopy with extents allocated %d of %d bytes: holes were copied as data", a, size)
		}
		if !extents && a < size/2 {
			t.Errorf("nbdcopy --no-extents -S 0 allocated only %d of %d bytes: the check above proves nothing", a, size)
		}
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}

// allocated is the storage a file occupies.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func qemuMap(t *testing.T, out []byte) []mapRun {
	t.Helper()
	var runs []mapRun
	for _, r := range testutil.ParseQemuImgMap(t, out) {
		var fl uint32
		if r.Zero {
			fl |= stateZero
		}
		if !r.Data {
			fl |= stateHole
		}
		runs = append(runs, mapRun{r.Start, r.Length, fl})
	}
	return mergeRuns(runs)
}

// TestQemuImgMapMatchesNbdkit has QEMU's NBD client read the allocation
// map from this server and from nbdkit, and convert the export.
func TestQemuImgMapMatchesNbdkit(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	path, size := mixedImage(t)
	sum := testutil.FileSHA256(t, path)
	sock := serveSource(t, path)
	ours := qemuMap(t, run(t, qemuImg, "map", "--output=json", "-f", "raw", unixURI(sock)))
	theirs := qemuMap(t, nbdkitRun(t, path, `qemu-img map --output=json -f raw "$uri"`))
	checkCovers(t, "qemu-img map", ours, size)
	if len(ours) < 3 || !equalRuns(ours, theirs) {
		t.Errorf("qemu-img map differs from nbdkit's, or shows no holes\nours:   %v\nnbdkit: %v", ours, theirs)
	}
	out := filepath.Join(t.TempDir(), "conv.img")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", unixURI(sock), out)
	if got := testutil.FileSHA256(t, out); got != sum {
		t.Errorf("qemu-img convert: sha256 %s, source %s", got, sum)
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}

// libnbdBlockStatusScript drives a server through python3-libnbd: meta
// context negotiation with an unknown context asked for too, REQ_ONE, and
// requests libnbd would refuse in strict mode (zero length, past the end,
// no context negotiated), then a client without structured replies.
const libnbdBlockStatusScript = `
import nbd, sys
uri, size = sys.argv[1], int(sys.argv[2])
def cb(metacontext, offset, entries, err):
    print("EXTENTS", metacontext, offset, list(entries))
    return 0
h = nbd.NBD()
h.add_meta_context("x-unknown:foo")
h.add_meta_context("base:allocation")
h.connect_uri(uri)
print("META", h.get_structured_replies_negotiated(), h.can_meta_context("base:allocation"), h.can_meta_context("x-unknown:foo"), h.can_df())
h.block_status(65536, 0, cb, nbd.CMD_FLAG_REQ_ONE)
h.block_status(65536, 196608 - 4096, cb, nbd.CMD_FLAG_REQ_ONE)
chunks = []
def chunk(buf, offset, status, err):
    chunks.append((offset, status, bytes(buf) == open(sys.argv[3], "rb").read()[offset:offset + len(buf)]))
    return 0
h.pread_structured(4096, 196608 + 4096, chunk, nbd.CMD_FLAG_DF)
print("DF", chunks)
h.set_strict_mode(0)
h2 = nbd.NBD()
h2.connect_uri(uri)
h2.set_strict_mode(0)
for name, fn in [
    ("zero length", lambda: h.block_status(0, 0, cb)),
    ("past end", lambda: h.block_status(8192, size - 4096, cb)),
    ("offset past end", lambda: h.block_status(512, size + 4096, cb)),
    ("no context", lambda: h2.block_status(4096, 0, cb)),
]:
    try:
        fn()
        print("NOERROR", name)
    except nbd.Error as e:
        print("ERROR", name, e.errnum)
h3 = nbd.NBD()
h3.set_request_structured_replies(False)
h3.add_meta_context("base:allocation")
h3.connect_uri(uri)
print("PLAIN", h3.get_structured_replies_negotiated(), h3.can_meta_context("base:allocation"), h3.can_df(), len(h3.pread(4096, 0)))
`

// TestLibnbdBlockStatusLikeNbdkit runs the same libnbd script against this
// server and against nbdkit's file plugin on the same image; every line
// must agree, and the lines that matter are checked by name too.
func TestLibnbdBlockStatusLikeNbdkit(t *testing.T) {
	py := testutil.RequirePython3Module(t, "nbd")
	path, size := mixedImage(t)
	sum := testutil.FileSHA256(t, path)
	script := filepath.Join(t.TempDir(), "bs.py")
	if err := os.WriteFile(script, []byte(libnbdBlockStatusScript), 0o644); err != nil {
		t.Fatal(err)
	}
	sizeArg := strconv.FormatInt(size, 10)
	sock := serveSource(t, path)
	ours := string(run(t, py, script, unixURI(sock), sizeArg, path))
	theirs := string(nbdkitRun(t, path, py+` `+script+` "$uri" `+sizeArg+` `+path))
	if ours != theirs {
		t.Errorf("libnbd sees this server differently from nbdkit\nours:\n%s\nnbdkit:\n%s", ours, theirs)
	}
	for _, want := range []string{
		"META True True False True",
		"EXTENTS base:allocation 0 [65536, 3]",
		"EXTENTS base:allocation 192512 [4096, 3]",
		"DF [(200704, 1, True)]",
		"ERROR zero length 22",
		"ERROR past end 22",
		"ERROR offset past end 22",
		"ERROR no context 22",
		"PLAIN False False False 4096",
	} {
		if !strings.Contains(ours, want+"\n") {
			t.Errorf("libnbd output lacks %q:\n%s", want, ours)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stillServes(t, sock, data)
	if testutil.FileSHA256(t, path) != sum {
		t.Fatal("source changed")
	}
}
