package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// BenchmarkPlanSourceXPDrivers measures planning the whole run (choosing
// the two missing IDE drivers from the cabinets, planning their creation
// in a System32\drivers of 300 files, re-reading the disk as it would be
// and planning the hive rewrite there) against planning an install that
// lacks nothing, and the driver half alone; and, as the peer measured in
// the same run, doing the driver half by hand with real tools: cabextract both members, mount a
// copy of the volume with ntfs-3g, copy them in and unmount.
func BenchmarkPlanSourceXPDrivers(b *testing.B) {
	for _, tool := range []string{"cabextract", "ntfs-3g"} {
		testutil.RequireTool(b, tool)
	}
	missing := testutil.XPTree(b, []string{"atapi.sys", "pciide.sys", "disk.sys"}, 300, xpCabinets())
	img := testutil.MkDisk(b, missing, 64)
	full := testutil.MkDisk(b, testutil.XPTree(b, []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys"}, 300, xpCabinets()), 64)
	plan := func(b *testing.B, path string, want int) {
		src, err := OpenSource(path)
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		for b.Loop() {
			p, err := PlanSource(src, PatchOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if n := 0; p.Drivers != nil && len(p.Drivers.Created) != want || p.Drivers == nil && want != n {
				b.Fatalf("created %+v, want %d", p.Drivers, want)
			}
		}
	}
	b.Run("kvmify-plan-2-missing", func(b *testing.B) { plan(b, img, 2) })
	b.Run("kvmify-plan-none-missing", func(b *testing.B) { plan(b, full, 0) })
	// The driver half alone (find in the cabinets, plan the creation),
	// which is what the peer does.
	b.Run("kvmify-drivers-only", func(b *testing.B) {
		src, err := OpenSource(img)
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		vols, err := FindVolumes(src)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			s, err := planDrivers(src, vols, PatchOptions{}, timeNow())
			if err != nil || s == nil || len(s.Created) != 2 {
				b.Fatalf("%+v %v", s, err)
			}
		}
	})
	b.Run("peer-cabextract-ntfs3g", func(b *testing.B) {
		cache := filepath.Join(missing, "Windows", "Driver Cache", "i386")
		var part string
		out := b.TempDir()
		mnt := b.TempDir()
		for b.Loop() {
			b.StopTimer()
			part = extractPartition(b, img)
			b.StartTimer()
			for _, c := range [][2]string{{"driver.cab", "intelide.sys"}, {"sp3.cab", "pciidex.sys"}} {
				if o, err := exec.Command("cabextract", "-q", "-d", out, "-F", c[1], filepath.Join(cache, c[0])).CombinedOutput(); err != nil {
					b.Fatalf("cabextract: %v %s", err, o)
				}
			}
			if o, err := exec.Command("ntfs-3g", part, mnt).CombinedOutput(); err != nil {
				b.Fatalf("ntfs-3g: %v %s", err, o)
			}
			for _, n := range []string{"intelide.sys", "pciidex.sys"} {
				data, err := os.ReadFile(filepath.Join(out, n))
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(mnt, "Windows", "System32", "drivers", n), data, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			if o, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				b.Fatalf("umount: %v %s", err, o)
			}
			b.StopTimer()
			os.Remove(part)
			b.StartTimer()
		}
	})
}
