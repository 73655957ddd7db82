package qcow2

import (
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// BenchmarkRead reads a 24 MiB disk in 256 KiB requests through plain and
// compressed images. The compressed image's data fits the 16 MiB cluster
// cache, so after the first pass this measures its cached path; the NBD
// comparison with qemu-nbd (README) covers decoding.
func BenchmarkRead(b *testing.B) {
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	testutil.SparseRandomDisk(b, raw, testDiskSize, 11)
	for _, c := range []struct {
		name string
		args []string
	}{{"plain", nil}, {"compressed", []string{"-c"}}} {
		p := filepath.Join(dir, c.name+".qcow2")
		testutil.QemuImg(b, append(append([]string{"convert", "-O", "qcow2"}, c.args...), raw, p)...)
		img, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			off := int64(0)
			for i := 0; i < b.N; i++ {
				if _, err := img.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				off = (off + int64(len(buf))) % img.Size()
			}
		})
		img.Close()
	}
}
