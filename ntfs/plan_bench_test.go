package ntfs

import (
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// planCountingReader counts the bytes read through it.
type planCountingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *planCountingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkPlanRewrite1TiB opens a sparse 1 TiB volume, locates a 10 MiB
// file and plans a rewrite of it, reporting how many bytes were read: the
// figure stays near the file's size plus a little metadata, whatever the
// volume's size.
func BenchmarkPlanRewrite1TiB(b *testing.B) {
	planTools(b)
	img := filepath.Join(b.TempDir(), "1tib.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(img, 1<<40); err != nil {
		b.Fatal(err)
	}
	run(b, "mkntfs", "-q", "-F", "-f", "-c", "4096", "-s", "512", "-p", "0", "-H", "255", "-S", "63", img)
	const fileSize = 10 << 20
	old := randomBytes(11, fileSize)
	withMount(b, img, "", func(mnt string) {
		if err := os.MkdirAll(filepath.Join(mnt, "Windows/System32/config"), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mnt, hivePath), old, 0o644); err != nil {
			b.Fatal(err)
		}
	})
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	edited := append([]byte(nil), old...)
	for _, page := range []int{10, 1000, 2000} {
		edited[page*4096] ^= 0xff
	}
	grown := append(append([]byte(nil), old...), make([]byte, 1<<20)...)
	for _, bc := range []struct {
		name    string
		content []byte
	}{{"edit-3-pages", edited}, {"grow-1MiB", grown}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(fileSize)
			var read int64
			for b.Loop() {
				cr := &planCountingReader{r: f}
				v, err := Open(cr, 1<<40)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := v.PlanRewrite(hivePath, bc.content, PlanOptions{}); err != nil {
					b.Fatal(err)
				}
				read = cr.n.Load()
			}
			b.ReportMetric(float64(read), "bytes-read/op")
			b.ReportMetric(float64(read-fileSize), "bytes-read-beyond-file/op")
		})
	}
}
