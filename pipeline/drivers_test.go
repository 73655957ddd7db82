package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
)

// mkdisk.sh puts its one partition at 1 MiB.
const testPartStart = 1 << 20

// xpCabinets are an XP driver cache: driver.cab with the release's copy
// of every IDE driver, sp3.cab with newer pciidex.sys and atapi.sys.
func xpCabinets() map[string]map[string][]byte {
	d := testutil.XPDriver
	return map[string]map[string][]byte{
		"driver.cab": {
			"atapi.sys": d("atapi.sys", 2600, 0), "intelide.sys": d("intelide.sys", 2600, 0),
			"pciide.sys": d("pciide.sys", 2600, 0), "pciidex.sys": d("pciidex.sys", 2600, 0),
			"usbport.sys": d("usbport.sys", 2600, 0),
		},
		"sp3.cab": {
			"pciidex.sys": d("pciidex.sys", 5512, 0), "atapi.sys": d("atapi.sys", 5512, 0),
		},
	}
}

// TestPlanSourceCreatesMissingDrivers plans the fix for an XP disk that
// lacks intelide.sys and pciidex.sys, applies every planned write to a
// copy of the disk and checks the copy with ntfs-3g's tools: each created
// file equals cabextract's output of the cabinet the plan names (the SP3
// copy of pciidex.sys), ntfsfix -n finds nothing to fix, the prediction on
// the copy (read afresh) is that ide boots, and the source is unchanged.
func TestPlanSourceCreatesMissingDrivers(t *testing.T) {
	for _, tool := range []string{"ntfscat", "ntfsfix", "ntfsls", "cabextract"} {
		testutil.RequireTool(t, tool)
	}
	tree := testutil.XPTree(t, []string{"atapi.sys", "pciide.sys", "disk.sys"}, 250, xpCabinets())
	img := testutil.MkDisk(t, tree, 48)
	before := testutil.FileSHA256(t, img)

	src, err := OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	vols, err := FindVolumes(src)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := vols[0].Installs[0].Prediction(bootfix.TargetIDE); p.OK {
		t.Fatalf("the source already boots on ide: %s", p.Reason)
	}
	planned, err := PlanSource(src, PatchOptions{Target: "ide"})
	if err != nil {
		t.Fatal(err)
	}
	sup := planned.Drivers
	if sup == nil {
		t.Fatal("no driver supply planned")
	}
	if !slices.Equal(sup.Missing, []string{"intelide.sys", "pciidex.sys"}) {
		t.Errorf("missing %v, want intelide.sys and pciidex.sys", sup.Missing)
	}
	if len(sup.NotFound) != 0 || len(sup.Created) != 2 {
		t.Fatalf("created %d, not found %v", len(sup.Created), sup.NotFound)
	}
	if sup.Time.IsZero() {
		t.Error("the plan's clock is not recorded")
	}
	wantSP := map[string]int{"intelide.sys": 0, "pciidex.sys": 3}
	wantVer := map[string]string{"intelide.sys": "5.1.2600.0", "pciidex.sys": "5.1.5512.0"}
	cache := filepath.Join(tree, "Windows", "Driver Cache", "i386")
	for _, f := range sup.Created {
		name := f.Path[strings.LastIndex(f.Path, `\`)+1:]
		if !strings.EqualFold(f.Path, `Windows\System32\drivers\`+name) {
			t.Errorf("created at %s", f.Path)
		}
		if f.ServicePack != wantSP[name] || f.Version != wantVer[name] {
			t.Errorf("%s: SP %d version %s, want SP %d version %s", name, f.ServicePack, f.Version, wantSP[name], wantVer[name])
		}
		want := testutil.Cabextract(t, filepath.Join(cache, filepath.Base(strings.ReplaceAll(f.Cabinet, `\`, "/"))), f.Member)
		if f.Size != int64(len(want)) || f.SHA256 != sha(want) {
			t.Errorf("%s: size %d sha256 %s, cabextract gives %d bytes %s", name, f.Size, f.SHA256, len(want), sha(want))
		}
		if f.Record < 24 || f.Clusters() == 0 {
			t.Errorf("%s: record %d, %d clusters", name, f.Record, f.Clusters())
		}
	}
	if planned.Plan.Before.OK {
		t.Errorf("before the plan: ide boots (%s), but two drivers are missing", planned.Plan.Before.Reason)
	}
	if !planned.Plan.After.OK {
		t.Errorf("after the plan: %s, want ide boots", planned.Plan.After.Reason)
	}
	if len(planned.Plan.MissingFiles) != 0 {
		t.Errorf("the plan still misses %v", planned.Plan.MissingFiles)
	}
	if n := len(sup.Writes); n == 0 || n >= len(planned.Writes) {
		t.Fatalf("%d driver writes among %d", n, len(planned.Writes))
	}

	// Apply everything to a copy, as the overlay would.
	cp := filepath.Join(t.TempDir(), "patched.img")
	testutil.CopyFile(t, img, cp)
	f, err := os.OpenFile(cp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range planned.Writes {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	part := extractPartition(t, cp)
	for _, c := range sup.Created {
		got, err := exec.Command("ntfscat", part, strings.ReplaceAll(c.Path, `\`, "/")).Output()
		if err != nil {
			t.Fatalf("ntfscat %s: %v", c.Path, err)
		}
		if sha(got) != c.SHA256 {
			t.Errorf("ntfscat %s: sha256 %s, planned %s", c.Path, sha(got), c.SHA256)
		}
	}
	if out, err := exec.Command("ntfsfix", "-n", part).CombinedOutput(); err != nil {
		t.Errorf("ntfsfix -n: %v\n%s", err, out)
	}
	ls, err := exec.Command("ntfsls", part, "-p", "/Windows/System32/drivers").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"intelide.sys", "pciidex.sys", "atapi.sys", "drv249.sys"} {
		if !slices.Contains(strings.Fields(string(ls)), n) {
			t.Errorf("ntfsls does not list %s", n)
		}
	}
	pd, err := OpenSource(cp)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	pvols, err := FindVolumes(pd)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := pvols[0].Installs[0].Prediction(bootfix.TargetIDE); !p.OK {
		t.Errorf("patched copy: ide %s", p.Reason)
	}
	if after := testutil.FileSHA256(t, img); after != before {
		t.Errorf("source changed: %s, was %s", after, before)
	}
}

// TestPlanSourceDriverCases: files present are never replaced (no
// creation at all when all four exist); a driver no cabinet holds is
// noted, the others still created; an ahci target considers no files.
func TestPlanSourceDriverCases(t *testing.T) {
	d := testutil.XPDriver
	onlyBase := map[string]map[string][]byte{"driver.cab": {"intelide.sys": d("intelide.sys", 2600, 0)}}
	cases := []struct {
		name        string
		present     []string
		target      string
		wantCreated []string
		wantMissing []string
	}{
		{"all present", []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys"}, "ide", nil, nil},
		{"one in no cabinet", []string{"atapi.sys", "pciide.sys"}, "ide", []string{"intelide.sys"}, []string{"pciidex.sys"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tree := testutil.XPTree(t, c.present, 0, onlyBase)
			img := testutil.MkDisk(t, tree, 24)
			src, err := OpenSource(img)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			planned, err := PlanSource(src, PatchOptions{Target: c.target})
			if err != nil {
				t.Fatal(err)
			}
			var created []string
			var notFound []string
			if s := planned.Drivers; s != nil {
				for _, f := range s.Created {
					created = append(created, f.Path[strings.LastIndex(f.Path, `\`)+1:])
				}
				notFound = s.NotFound
				if len(s.Created) == 0 && len(s.Writes) != 0 {
					t.Errorf("%d writes for no file", len(s.Writes))
				}
			}
			if !slices.Equal(created, c.wantCreated) || !slices.Equal(notFound, c.wantMissing) {
				t.Errorf("created %v not found %v, want %v and %v", created, notFound, c.wantCreated, c.wantMissing)
			}
			if len(c.wantMissing) > 0 && !strings.Contains(strings.Join(planned.Plan.Notes, "\n"), c.wantMissing[0]) {
				t.Errorf("notes do not name %s: %q", c.wantMissing[0], planned.Plan.Notes)
			}
			// Another target considers no files (XP has no AHCI profile,
			// so the plan itself refuses it).
			vols, err := FindVolumes(src)
			if err != nil {
				t.Fatal(err)
			}
			if s, err := planDrivers(src, vols, PatchOptions{Target: "ahci"}, timeNow()); s != nil || err != nil {
				t.Errorf("ahci: driver supply %+v, %v", s, err)
			}
		})
	}
}

// TestPlanImageListsDrivers: the plan command's entry point plans the
// driver files too, and with them ide is predicted to boot.
func TestPlanImageListsDrivers(t *testing.T) {
	tree := testutil.XPTree(t, []string{"atapi.sys", "disk.sys"}, 0, xpCabinets())
	img := testutil.MkDisk(t, tree, 24)
	p, err := PlanImage(img, PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Drivers == nil || len(p.Drivers.Created) != 3 {
		t.Fatalf("PlanImage planned %+v", p.Drivers)
	}
	if p.Plan.Target != bootfix.TargetIDE || !p.Plan.After.OK {
		t.Errorf("target %s after %v %s", p.Plan.Target, p.Plan.After.OK, p.Plan.After.Reason)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// extractPartition copies the disk's partition (at testPartStart) into a
// file of its own for ntfs-3g's tools.
func extractPartition(t testing.TB, img string) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), "part.img")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := f.Seek(testPartStart, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, f); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPlanSourceRegistryAlreadyFixed: an install whose hive already holds
// MergeIDE's entries but which lacks two of the drivers is predicted not
// to boot before the plan (the source as found), gets only the files
// (no registry change), and boots after.
func TestPlanSourceRegistryAlreadyFixed(t *testing.T) {
	all := []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys"}
	full := testutil.MkDisk(t, testutil.XPTree(t, all, 0, nil), 24)
	src, err := OpenSource(full)
	if err != nil {
		t.Fatal(err)
	}
	first, err := PlanSource(src, PatchOptions{})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if first.Plan.PatchedHive == nil || (first.Drivers != nil && len(first.Drivers.Created) != 0) {
		t.Fatalf("the full install's plan: hive %d bytes, drivers %+v", len(first.Plan.PatchedHive), first.Drivers)
	}

	tree := testutil.XPTree(t, []string{"atapi.sys", "pciide.sys", "disk.sys"}, 0, xpCabinets())
	if err := os.WriteFile(filepath.Join(tree, "Windows", "System32", "config", "SYSTEM"), first.Plan.PatchedHive, 0o644); err != nil {
		t.Fatal(err)
	}
	img := testutil.MkDisk(t, tree, 24)
	src, err = OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := PlanSource(src, PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Drivers == nil || len(p.Drivers.Created) != 2 {
		t.Fatalf("drivers planned: %+v", p.Drivers)
	}
	if len(p.Plan.Changes) != 0 {
		t.Errorf("%d registry changes on a fixed hive", len(p.Plan.Changes))
	}
	// Besides the files, only XP's boot-sector geometry fields (primary
	// and backup: heads and sectors per track) are written.
	var geometry int
	if p.Plan.Geometry != nil {
		geometry = len(p.Plan.Geometry.Writes)
	}
	if len(p.Writes) != len(p.Drivers.Writes)+geometry {
		t.Errorf("%d writes, %d of them the files', %d the geometry's", len(p.Writes), len(p.Drivers.Writes), geometry)
	}
	if p.Plan.Before.OK || !p.Plan.After.OK {
		t.Errorf("before: %v %s; after: %v %s", p.Plan.Before.OK, p.Plan.Before.Reason, p.Plan.After.OK, p.Plan.After.Reason)
	}
}

// TestPlanSourceNoDriversDir: an install without System32\drivers (where
// no file can be created) is planned as before, the registry fix alone,
// with a note saying why no file is created and the files still missing.
func TestPlanSourceNoDriversDir(t *testing.T) {
	tree := testutil.XPTree(t, nil, 0, xpCabinets())
	if err := os.RemoveAll(filepath.Join(tree, "Windows", "System32", "drivers")); err != nil {
		t.Fatal(err)
	}
	img := testutil.MkDisk(t, tree, 24)
	src, err := OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := PlanSource(src, PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Drivers == nil || len(p.Drivers.Created) != 0 || len(p.Drivers.Writes) != 0 || len(p.Drivers.Missing) != 4 {
		t.Fatalf("drivers: %+v", p.Drivers)
	}
	if !strings.Contains(strings.Join(p.Plan.Notes, "\n"), "cannot be created") {
		t.Errorf("notes: %q", p.Plan.Notes)
	}
	if len(p.Plan.MissingFiles) == 0 || len(p.Writes) == 0 {
		t.Errorf("missing files %v, %d writes", p.Plan.MissingFiles, len(p.Writes))
	}
}
