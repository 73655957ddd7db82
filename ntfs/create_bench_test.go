package ntfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mergeIDEDrivers are the four files MergeIDE needs, at their XP SP3 sizes.
func mergeIDEDrivers() []NewFile {
	const dir = `\WINDOWS\system32\drivers`
	return []NewFile{
		{Dir: dir, Name: "atapi.sys", Content: randomBytes(41, 96512)},
		{Dir: dir, Name: "intelide.sys", Content: randomBytes(42, 5504)},
		{Dir: dir, Name: "pciide.sys", Content: randomBytes(43, 3328)},
		{Dir: dir, Name: "pciidex.sys", Content: randomBytes(44, 24960)},
	}
}

// BenchmarkPlanCreateDrivers plans the four MergeIDE drivers into a
// System32\drivers of 300 files on a sparse 1 TiB volume, reporting the
// bytes read (the plan reads the directory, a sibling, the bitmaps' first
// chunks and nothing proportional to the volume), and, as the peer
// measured in the same run on a 256 MiB copy of such a tree, ntfs-3g
// mounting the volume, writing the same files and unmounting.
func BenchmarkPlanCreateDrivers(b *testing.B) {
	planTools(b)
	files := mergeIDEDrivers()
	fill := func(mnt string) {
		for i := 0; i < 300; i++ {
			p := filepath.Join(mnt, "WINDOWS/system32/drivers", fmt.Sprintf("d%03d.sys", i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, randomBytes(uint64(i), 1000+i*50), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	mkvol := func(size int64) string {
		img := filepath.Join(b.TempDir(), "vol.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(img, size); err != nil {
			b.Fatal(err)
		}
		run(b, "mkntfs", "-q", "-F", "-f", "-c", "4096", "-s", "512", "-p", "0", "-H", "255", "-S", "63", img)
		withMount(b, img, "", fill)
		return img
	}
	var total int64
	for _, f := range files {
		total += int64(len(f.Content))
	}
	b.Run("kvmify-plan-1TiB", func(b *testing.B) {
		img := mkvol(1 << 40)
		f, err := os.Open(img)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(total)
		var read int64
		for b.Loop() {
			cr := &planCountingReader{r: f}
			v, err := Open(cr, 1<<40)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := v.PlanCreate(files, CreateOptions{Now: createClock}); err != nil {
				b.Fatal(err)
			}
			read = cr.n.Load()
		}
		b.ReportMetric(float64(read), "bytes-read/op")
	})
	img := mkvol(256 << 20)
	b.Run("kvmify-plan-256MiB", func(b *testing.B) {
		f, err := os.Open(img)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(total)
		for b.Loop() {
			v, err := Open(f, 256<<20)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := v.PlanCreate(files, CreateOptions{Now: createClock}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ntfs-3g-create-256MiB", func(b *testing.B) {
		b.SetBytes(total)
		work := filepath.Join(b.TempDir(), "work.img")
		for b.Loop() {
			b.StopTimer()
			if out, err := exec.Command("cp", "--sparse=always", img, work).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v\n%s", err, out)
			}
			b.StartTimer()
			withMount(b, work, "", func(mnt string) {
				for _, nf := range files {
					if err := os.WriteFile(filepath.Join(mnt, "WINDOWS/system32/drivers", nf.Name), nf.Content, 0o644); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}
