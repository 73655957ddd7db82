package xpdrivers_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/windows"
	"github.com/kvmify/kvmify/xpdrivers"
)

// TestFindOnNTFS puts the driver cache on an NTFS volume made by mkntfs and
// ntfs-3g and reads it through kvmify's own NTFS reader, as package
// windows will: the drivers chosen equal cabextract's output from the
// same cabinets, and the disk image is not changed.
func TestFindOnNTFS(t *testing.T) {
	tree := t.TempDir()
	cache := filepath.Join(tree, "WINDOWS", "Driver Cache", "i386")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	drv := xpdrivers.DriverImageForTest
	xpdrivers.GcabForTest(t, filepath.Join(cache, "driver.cab"), map[string][]byte{
		"atapi.sys":    drv("atapi.sys", 2600, 0),
		"big.dat":      xpdrivers.FillerForTest(3 << 20),
		"pciide.sys":   drv("pciide.sys", 2600, 0),
		"pciidex.sys":  drv("pciidex.sys", 2600, 0),
		"intelide.sys": drv("intelide.sys", 2600, 0),
	})
	xpdrivers.GcabForTest(t, filepath.Join(cache, "sp3.cab"), map[string][]byte{
		"pciidex.sys": drv("pciidex.sys", 5512, 0),
		"atapi.sys":   drv("atapi.sys", 5512, 0),
	})
	if err := os.WriteFile(filepath.Join(cache, "drvindex.inf"), []byte(xpdrivers.XPIndexForTest), 0o644); err != nil {
		t.Fatal(err)
	}
	img := testutil.MkDisk(t, tree, 24)
	before := testutil.FileSHA256(t, img)

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const partStart = 1 << 20 // mkdisk.sh's partition
	fsys, _, err := windows.OpenNTFS(io.NewSectionReader(f, partStart, fi.Size()-partStart), fi.Size()-partStart)
	if err != nil {
		t.Fatal(err)
	}
	res, err := xpdrivers.Find(fsys, "Windows", xpdrivers.IDEDrivers())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 0 || len(res.Drivers) != 4 {
		t.Fatalf("found %d, missing %v", len(res.Drivers), res.Missing)
	}
	wantSP := map[string]int{"atapi.sys": 3, "intelide.sys": 0, "pciide.sys": 0, "pciidex.sys": 3}
	for _, d := range res.Drivers {
		if d.ServicePack != wantSP[d.Name] {
			t.Errorf("%s from SP %d (%s), want SP %d", d.Name, d.ServicePack, d.Cabinet, wantSP[d.Name])
		}
		host := filepath.Join(cache, filepath.Base(strings.ReplaceAll(d.Cabinet, `\`, "/")))
		if got := xpdrivers.CabextractSumForTest(t, host, d.Member); got != d.SHA256 {
			t.Errorf("%s: sha256 %s over NTFS, cabextract %s", d.Name, d.SHA256, got)
		}
	}
	if after := testutil.FileSHA256(t, img); after != before {
		t.Errorf("disk image changed: sha256 %s, was %s", after, before)
	}
}
