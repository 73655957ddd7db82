package ntfs

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r     io.ReaderAt
	bytes atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.bytes.Add(int64(n))
	return n, err
}

// BenchmarkLocateAndRead10MB opens a sparse NTFS volume of 1 GiB and of
// 1 TiB, locates a 10 MB hive-like file and reads it, reporting how many
// bytes of the image that took: it must stay near the file size plus a
// little metadata, the same for both volume sizes.
func BenchmarkLocateAndRead10MB(b *testing.B) {
	for _, c := range []struct {
		name string
		size int64
	}{{"1GiB", 1 << 30}, {"1TiB", 1 << 40}} {
		b.Run(c.name, func(b *testing.B) { benchLocateAndRead(b, c.size) })
	}
}

func benchLocateAndRead(b *testing.B, size int64) {
	mkntfs := testutil.RequireTool(b, "mkntfs")
	testutil.RequireTool(b, "ntfs-3g")
	dir := b.TempDir()
	img := filepath.Join(dir, "volume.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		b.Skipf("cannot create a %d-byte sparse file here: %v", size, err)
	}
	if out, err := exec.Command(mkntfs, "-q", "-F", "-f", "-Q", "-c", "4096", "-p", "0", "-H", "255", "-S", "63", img).CombinedOutput(); err != nil {
		b.Fatalf("mkntfs: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	script := `set -e; ntfs-3g "$1" "$2"; trap 'umount "$2"' EXIT
mkdir -p "$2/Windows/System32/config"; head -c 10485760 /dev/urandom >"$2/Windows/System32/config/SYSTEM"`
	if out, err := exec.Command("bash", "-c", script, "bash", img, mnt).CombinedOutput(); err != nil {
		b.Fatalf("populating: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 10<<20)
	var read int64
	b.ResetTimer()
	for b.Loop() {
		c := &countingReader{r: f}
		v, err := Open(c, size)
		if err != nil {
			b.Fatal(err)
		}
		s, err := v.OpenStream(`Windows\System32\config\SYSTEM`)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.ReadAt(buf[:s.Size()], 0); err != nil && err != io.EOF {
			b.Fatal(err)
		}
		read = c.bytes.Load()
	}
	b.SetBytes(10 << 20)
	b.ReportMetric(float64(read), "bytes-read/op")
	b.ReportMetric(float64(read-(10<<20)), "metadata-bytes/op")
}
