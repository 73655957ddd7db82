package export_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

// sparse1TiB builds a 1 TiB sparse image holding the XP test disk (an NTFS
// volume with the corpus XP SYSTEM hive, built by scripts/mkdisk.sh) at its
// start, copied so that its zero blocks stay holes.
func sparse1TiB(b *testing.B) string {
	b.Helper()
	small := testutil.MkDisk(b, testutil.WindowsTree(b, "xp-sp3-x86.SYSTEM", nil, "atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys"), 64)
	big := filepath.Join(b.TempDir(), "xp-1tib.img")
	if out, err := exec.Command("cp", "--sparse=always", small, big).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v\n%s", err, out)
	}
	if err := os.Truncate(big, 1<<40); err != nil {
		b.Fatal(err)
	}
	return big
}

// BenchmarkExport1TiBSparse exports a 1 TiB sparse image holding the XP
// test disk, through an overlay as kvmify does, and converts the same file
// with qemu-img convert in the same iteration; kvmify/qemu-img is the ratio
// of their times.
func BenchmarkExport1TiBSparse(b *testing.B) {
	qemuImg := testutil.RequireTool(b, "qemu-img")
	img := sparse1TiB(b)
	src, err := disk.OpenSource(img)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dir := b.TempDir()
	ov, err := overlay.Open(filepath.Join(dir, "ov"), src, overlay.Options{SourcePath: img})
	if err != nil {
		b.Fatal(err)
	}
	defer ov.Close()
	for _, format := range []string{"raw", "qcow2"} {
		b.Run(format, func(b *testing.B) {
			out := filepath.Join(dir, "out."+format)
			var ours, theirs time.Duration
			for b.Loop() {
				start := time.Now()
				if format == "raw" {
					err = export.Raw(context.Background(), ov, out, nil)
				} else {
					err = export.QCOW2(context.Background(), ov, out, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				ours += time.Since(start)
				os.Remove(out)
				start = time.Now()
				if o, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", format, img, out).CombinedOutput(); err != nil {
					b.Fatalf("qemu-img convert: %v\n%s", err, o)
				}
				theirs += time.Since(start)
				os.Remove(out)
			}
			b.ReportMetric(float64(ours.Microseconds())/float64(b.N)/1000, "kvmify-ms/op")
			b.ReportMetric(float64(theirs.Microseconds())/float64(b.N)/1000, "qemu-img-ms/op")
			b.ReportMetric(float64(ours)/float64(theirs), "kvmify/qemu-img")
		})
	}
}
