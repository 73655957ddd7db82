package ntfs

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"

	"github.com/kvmify/kvmify/disk"
)

// Paths of the files the planner tests create with ntfs-3g. hivePath sits in
// a small directory (its $I30 entry lives in $INDEX_ROOT), manyTarget in a
// directory of 150 files (its entry lives in an INDX block).
const (
	hivePath     = "/Windows/System32/config/SYSTEM"
	neighborPath = "/Windows/System32/config/SOFTWARE"
	manyTarget   = "/many/big-target.bin"
	residentPath = "/hello.txt"
	sparsePath   = "/sparse.bin"
	fragPath     = "/frag/target.bin"
	compressPath = "/compressed/text.txt"
	// fragStream is a named stream of fragPath, written through ntfs-3g's
	// user.* extended attributes.
	fragStream     = "ads"
	fragStreamData = "a named stream after the unnamed $DATA"
	// planHiveBase is roughly a small hive; the file's size is made
	// cluster-size dependent so its last cluster has slack.
	planHiveBase = 300000
)

// ntfsAttribCompressed is FILE_ATTRIBUTE_COMPRESSED in ntfs-3g's
// system.ntfs_attrib_be extended attribute (big-endian).
var ntfsAttribCompressed = []byte{0x00, 0x00, 0x08, 0x00}

// planTools skips (or fails under CI) when a peer is missing.
func planTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mkntfs", "ntfs-3g", "ntfscat", "ntfsinfo", "ntfscluster", "ntfsfix"} {
		testutil.RequireTool(t, tool)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if testutil.InCI() {
			t.Fatal("/dev/fuse missing: ntfs-3g cannot build the test images")
		}
		t.Skip("/dev/fuse missing: ntfs-3g cannot build the test images")
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// withMount mounts img with ntfs-3g (options as for -o), calls fn with the
// mount point and unmounts.
func withMount(t testing.TB, img, opts string, fn func(mnt string)) {
	t.Helper()
	mnt := t.TempDir()
	args := []string{img, mnt}
	if opts != "" {
		args = []string{"-o", opts, img, mnt}
	}
	run(t, "ntfs-3g", args...)
	defer func() { run(t, "umount", mnt) }()
	fn(mnt)
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hiveSize(cs int64) int {
	return int(planHiveBase/cs*cs + cs/2)
}

// buildPlanImage makes a bare NTFS volume with mkntfs and fills it through
// ntfs-3g. With fragment set it then fills the volume with small files,
// deletes every other one and writes fragPath into the holes, leaving the
// free space fragmented too.
func buildPlanImage(t *testing.T, cs int64, sizeMB int, fragment bool) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkntfs", "-q", "-F", "-f", "-c", strconv.FormatInt(cs, 10), "-s", "512", "-p", "0", "-H", "255", "-S", "63", "-L", "plan", img)
	opts := ""
	if cs <= 4096 {
		opts = "compression"
	}
	withMount(t, img, opts, func(mnt string) {
		write := func(p string, b []byte) {
			full := filepath.Join(mnt, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write(hivePath, randomBytes(1, hiveSize(cs)))
		write(neighborPath, randomBytes(2, 100000))
		write(residentPath, []byte("hello, kvmify\n"))
		for i := 0; i < 150; i++ {
			write("/many/file-with-a-longish-name-"+strconv.Itoa(i)+".txt", []byte(strconv.Itoa(i)))
		}
		write(manyTarget, randomBytes(3, 50000))
		f, err := os.Create(filepath.Join(mnt, sparsePath))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("in the middle"), 500000); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(1 << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if cs <= 4096 {
			dir := filepath.Join(mnt, filepath.Dir(compressPath))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Setxattr(dir, "system.ntfs_attrib_be", ntfsAttribCompressed, 0); err != nil {
				t.Fatal(err)
			}
			write(compressPath, bytes.Repeat([]byte("a compressible line of text\n"), 3000))
		}
		if fragment {
			writeInterleaved(t, mnt, cs)
			fillAndPunch(t, mnt, cs)
		}
	})
	return img
}

// writeInterleaved grows fragPath to a hive-like 6 MiB, 32 clusters at a
// time, writing a spacer file after each piece, so ntfs-3g's next-fit
// allocator fragments it.
func writeInterleaved(t *testing.T, mnt string, cs int64) {
	t.Helper()
	dir := filepath.Join(mnt, filepath.Dir(fragPath))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	piece := int(32 * cs)
	data := randomBytes(4, 48*piece+123)
	for i := 0; i*piece < len(data); i++ {
		f, err := os.OpenFile(filepath.Join(mnt, fragPath), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data[i*piece : min(len(data), (i+1)*piece)]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "spacer-"+strconv.Itoa(i)), make([]byte, piece), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A named stream puts an attribute after the unnamed $DATA, so a
	// longer runlist must move it.
	if err := syscall.Setxattr(filepath.Join(mnt, fragPath), "user."+fragStream, []byte(fragStreamData), 0); err != nil {
		t.Fatal(err)
	}
}

// fillAndPunch fills the volume with 8-cluster files, then deletes every
// other one.
func fillAndPunch(t *testing.T, mnt string, cs int64) {
	t.Helper()
	dir := filepath.Join(mnt, "fill")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 8*cs)
	var names []string
	for i := 0; ; i++ {
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(p, chunk, 0o644); err != nil {
			os.Remove(p)
			break
		}
		names = append(names, p)
	}
	for i := 0; i < len(names); i += 2 {
		if err := os.Remove(names[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// applyToCopy copies img and applies the writes with WriteAt, checking each
// is whole sectors.
func applyToCopy(t *testing.T, img string, writes []disk.Write, sector int64) string {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy.img")
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(cp)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if w.Offset%sector != 0 || int64(len(w.Data))%sector != 0 {
			t.Errorf("%s write at %d of %d bytes is not sector-aligned", w.What, w.Offset, len(w.Data))
		}
		if _, err := dst.WriteAt(w.Data, w.Offset); err != nil {
			t.Fatal(err)
		}
	}
	return cp
}

// treeHashes reads every regular file through an ntfs-3g read-only mount.
func treeHashes(t *testing.T, img string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	withMount(t, img, "ro", func(mnt string) {
		err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out["/"+strings.TrimPrefix(p, mnt+"/")] = sha256.Sum256(b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	return out
}

// dataSizes are the $DATA attribute sizes ntfsinfo -F prints.
type dataSizes struct{ data, alloc, init int64 }

var ntfsinfoSize = regexp.MustCompile(`(?m)^\s*(Data|Allocated|Initialized) size:\s+(\d+)`)

func ntfsinfoData(t *testing.T, img, path string) dataSizes {
	t.Helper()
	out := run(t, "ntfsinfo", "-F", path, img)
	i := strings.Index(out, "Dumping attribute $DATA")
	if i < 0 {
		t.Fatalf("ntfsinfo -F %s: no $DATA attribute\n%s", path, out)
	}
	// Only the first (unnamed) $DATA attribute; named streams follow it.
	block := out[i+1:]
	if j := strings.Index(block, "Dumping attribute"); j >= 0 {
		block = block[:j]
	}
	var s dataSizes
	for _, m := range ntfsinfoSize.FindAllStringSubmatch(block, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		switch m[1] {
		case "Data":
			s.data = n
		case "Allocated":
			s.alloc = n
		case "Initialized":
			s.init = n
		}
	}
	return s
}

var ntfsclusterRun = regexp.MustCompile(`(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)

// ntfsclusterRuns returns the $DATA runs ntfscluster -F prints.
func ntfsclusterRuns(t *testing.T, img, path string) []Run {
	t.Helper()
	out := run(t, "ntfscluster", "-F", path, img)
	i := strings.Index(out, "0x80 - non-resident")
	if i < 0 {
		t.Fatalf("ntfscluster -F %s: no non-resident $DATA\n%s", path, out)
	}
	var runs []Run
	for _, m := range ntfsclusterRun.FindAllStringSubmatch(out[i:], -1) {
		vcn, _ := strconv.ParseInt(m[1], 10, 64)
		lcn, _ := strconv.ParseInt(m[2], 10, 64)
		n, _ := strconv.ParseInt(m[3], 10, 64)
		runs = append(runs, Run{VCN: vcn, LCN: lcn, Length: n})
	}
	return runs
}

// bitmapBits reads $Bitmap with ntfscat.
func bitmapBits(t *testing.T, img string) []byte {
	t.Helper()
	out, err := exec.Command("ntfscat", img, "$Bitmap").Output()
	if err != nil {
		t.Fatalf("ntfscat $Bitmap: %v", err)
	}
	return out
}

func bitSet(bm []byte, lcn int64) bool { return bm[lcn/8]&(1<<(lcn%8)) != 0 }

func countBits(bm []byte) int {
	n := 0
	for _, b := range bm {
		for ; b != 0; b &= b - 1 {
			n++
		}
	}
	return n
}

func openVolumeFile(t *testing.T, img string) *Volume {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return v
}
