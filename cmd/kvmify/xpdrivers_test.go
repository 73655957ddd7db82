package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// xpMissingTree is an XP volume whose System32\drivers holds atapi.sys
// and pciide.sys (and 300 other drivers) but lacks intelide.sys and
// pciidex.sys, with a driver cache of driver.cab (every IDE driver, build
// 2600) and sp3.cab (a newer pciidex.sys, build 5512, which must win).
func xpMissingTree(t *testing.T) string {
	d := testutil.XPDriver
	var present []string
	for _, n := range []string{"atapi", "pciide", "disk", "classpnp", "partmgr"} {
		present = append(present, n+".sys")
	}
	tree := testutil.XPTree(t, present, 300, map[string]map[string][]byte{
		"driver.cab": {
			"atapi.sys": d("atapi.sys", 2600, 0), "intelide.sys": d("intelide.sys", 2600, 0),
			"pciide.sys": d("pciide.sys", 2600, 0), "pciidex.sys": d("pciidex.sys", 2600, 0),
			"usbport.sys": d("usbport.sys", 2600, 0),
		},
		"sp3.cab": {"pciidex.sys": d("pciidex.sys", 5512, 1), "atapi.sys": d("atapi.sys", 5512, 1)},
	})
	os.WriteFile(filepath.Join(tree, "boot.ini"), []byte("[boot loader]\r\n"), 0o644)
	return tree
}

// planCreate is one entry of "plan --json"'s create_files.
type planCreate struct {
	Path        string `json:"path"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Cabinet     string `json:"cabinet"`
	Member      string `json:"member"`
	ServicePack int    `json:"service_pack"`
	Version     string `json:"version"`
	MFTRecord   uint64 `json:"mft_record"`
	Clusters    int64  `json:"clusters"`
	Runs        []struct {
		LCN, Length int64
	} `json:"runs"`
}

// TestXPDriversServed is issue 13's end-to-end case, with the built binary:
// "plan" lists the two drivers it will create (the SP3 copy of pciidex.sys,
// driver.cab's intelide.sys); serve applies them with the registry fix and
// the served disk, copied out with qemu-img, is checked with ntfs-3g's
// tools: ntfs-3g reads each created file byte-equal to cabextract's
// output, ntfsls lists them in System32\drivers, ntfsinfo finds their MFT
// records where the report says, ntfsfix -n finds nothing to fix, every
// other file of the tree reads back unchanged, inspect predicts that ide
// boots (and predicted 0x7B on the source), and the source's sha256 is
// unchanged.
func TestXPDriversServed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; -short")
	}
	for _, tool := range []string{"qemu-img", "ntfs-3g", "ntfsls", "ntfsinfo", "ntfsfix", "cabextract"} {
		testutil.RequireTool(t, tool)
	}
	bin := testutil.BuildKvmify(t)
	tree := xpMissingTree(t)
	img := testutil.MkDisk(t, tree, 64)
	os.Chmod(img, 0o444)
	srcHash := testutil.FileSHA256(t, img)
	cache := filepath.Join(tree, "Windows", "Driver Cache", "i386")
	hostCab := func(volPath string) string {
		return filepath.Join(cache, filepath.Base(strings.ReplaceAll(volPath, `\`, "/")))
	}
	if ok, _ := predicts(t, bin, img, "ide"); ok {
		t.Fatal("the source already boots on ide; the test proves nothing")
	}

	// plan, text and JSON.
	out, stderr, code := kv(t, bin, "", "plan", "--json", img)
	if code != 0 {
		t.Fatalf("plan --json: %d\n%s", code, stderr)
	}
	var plan struct {
		Target      string       `json:"target"`
		CreateFiles []planCreate `json:"create_files"`
		Missing     []any        `json:"missing_files"`
		After       *struct {
			Verdict string `json:"verdict"`
		} `json:"after"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, out)
	}
	byName := map[string]planCreate{}
	for _, c := range plan.CreateFiles {
		byName[strings.ToLower(c.Path[strings.LastIndex(c.Path, `\`)+1:])] = c
	}
	want := map[string]struct {
		cab, version string
		sp           int
	}{
		"intelide.sys": {"driver.cab", "5.1.2600.0", 0},
		"pciidex.sys":  {"sp3.cab", "5.1.5512.1", 3},
	}
	if len(plan.CreateFiles) != len(want) {
		t.Fatalf("plan creates %d files, want %d:\n%s", len(plan.CreateFiles), len(want), out)
	}
	for name, w := range want {
		c, ok := byName[name]
		if !ok {
			t.Fatalf("plan does not create %s:\n%s", name, out)
		}
		if !strings.EqualFold(filepath.Base(strings.ReplaceAll(c.Cabinet, `\`, "/")), w.cab) || c.ServicePack != w.sp || c.Version != w.version {
			t.Errorf("%s: from %s (SP %d) version %s, want %s SP %d %s", name, c.Cabinet, c.ServicePack, c.Version, w.cab, w.sp, w.version)
		}
		data := testutil.Cabextract(t, hostCab(c.Cabinet), c.Member)
		if c.Size != int64(len(data)) || c.SHA256 != sum256(data) {
			t.Errorf("%s: plan says %d bytes %s, cabextract %d bytes %s", name, c.Size, c.SHA256, len(data), sum256(data))
		}
		var n int64
		for _, r := range c.Runs {
			n += r.Length
		}
		if len(c.Runs) == 0 || n != c.Clusters || c.MFTRecord < 24 {
			t.Errorf("%s: runs %v, %d clusters, record %d", name, c.Runs, c.Clusters, c.MFTRecord)
		}
	}
	if len(plan.Missing) != 0 || plan.After == nil || plan.After.Verdict != "boots" {
		t.Errorf("plan: still missing %v, after %+v", plan.Missing, plan.After)
	}
	text, stderr, code := kv(t, bin, "", "plan", img)
	if code != 0 {
		t.Fatalf("plan: %d\n%s", code, stderr)
	}
	for _, s := range []string{"files to create (2)", `drivers\intelide.sys`, `drivers\pciidex.sys`, "sp3.cab", "service pack 3", "5.1.5512.1", "clusters at"} {
		if !strings.Contains(text, s) {
			t.Errorf("plan text lacks %q:\n%s", s, text)
		}
	}

	// serve, copy the served disk out.
	dir := t.TempDir()
	ov, rep, sock := filepath.Join(dir, "x.ovl"), filepath.Join(dir, "report.json"), filepath.Join(dir, "s.sock")
	var srvErr bytes.Buffer
	srv := exec.Command(bin, "serve", img, "--overlay", ov, "--unix", sock, "--report", rep, "--hash")
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	waitSocket(t, sock, &srvErr)
	served := filepath.Join(dir, "served.raw")
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "raw", "nbd+unix:///?socket="+sock, served).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s\n%s", err, b, srvErr.String())
	}
	srv.Process.Signal(os.Interrupt)
	if err := srv.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, srvErr.String())
	}

	// The report lists each created file.
	var report struct {
		SourceSHA256 string `json:"source_sha256"`
		Patch        struct {
			Created []struct {
				Path        string `json:"path"`
				Size        int64  `json:"size"`
				SHA256      string `json:"sha256"`
				Cabinet     string `json:"cabinet"`
				Member      string `json:"member"`
				ServicePack int    `json:"service_pack"`
				Version     string `json:"version"`
				MFTRecord   uint64 `json:"mft_record"`
			} `json:"created_files"`
		} `json:"patch"`
	}
	rb, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &report); err != nil {
		t.Fatal(err)
	}
	if report.SourceSHA256 != srcHash || len(report.Patch.Created) != 2 {
		t.Fatalf("report: source %s (want %s), %d created files\n%s", report.SourceSHA256, srcHash, len(report.Patch.Created), rb)
	}

	part := partition(t, served)
	mnt := t.TempDir()
	// ntfs-3g mounts a copy of its own: the tools below refuse a mounted
	// volume.
	if b, err := exec.Command("ntfs-3g", "-o", "ro", partition(t, served), mnt).CombinedOutput(); err != nil {
		t.Fatalf("ntfs-3g mount of the served volume: %v\n%s", err, b)
	}
	defer exec.Command("umount", mnt).Run()
	ls := run(t, "ntfsls", "-f", part, "-p", "/Windows/System32/drivers")
	for _, c := range report.Patch.Created {
		name := c.Path[strings.LastIndex(c.Path, `\`)+1:]
		pc := byName[strings.ToLower(name)]
		if c.SHA256 != pc.SHA256 || c.Cabinet != pc.Cabinet || c.Member != pc.Member || c.Version != pc.Version || c.MFTRecord != pc.MFTRecord || c.Size != pc.Size {
			t.Errorf("report %+v differs from the plan %+v", c, pc)
		}
		got, err := os.ReadFile(filepath.Join(mnt, strings.ReplaceAll(c.Path, `\`, "/")))
		if err != nil {
			t.Fatalf("ntfs-3g reading %s: %v", c.Path, err)
		}
		if wantData := testutil.Cabextract(t, hostCab(c.Cabinet), c.Member); !bytes.Equal(got, wantData) {
			t.Errorf("%s: ntfs-3g reads %d bytes (%s), cabextract gives %d (%s)", c.Path, len(got), sum256(got), len(wantData), sum256(wantData))
		}
		if sum256(got) != c.SHA256 {
			t.Errorf("%s: report sha256 %s, served file %s", c.Path, c.SHA256, sum256(got))
		}
		if !regexp.MustCompile(`(?m)\s` + regexp.QuoteMeta(name) + `$`).Match(ls) {
			t.Errorf("ntfsls does not list %s:\n%s", name, ls)
		}
		info := run(t, "ntfsinfo", "-F", "/"+strings.ReplaceAll(c.Path, `\`, "/"), part)
		if !regexp.MustCompile(fmt.Sprintf(`Dumping Inode %d\b`, c.MFTRecord)).Match(info) {
			t.Errorf("ntfsinfo -F %s does not show record %d:\n%s", c.Path, c.MFTRecord, info)
		}
	}
	if b, err := exec.Command("ntfsfix", "-n", part).CombinedOutput(); err != nil {
		t.Errorf("ntfsfix -n on the served volume: %v\n%s", err, b)
	}
	if b, err := exec.Command("ntfsinfo", "-m", part).CombinedOutput(); err != nil {
		t.Errorf("ntfsinfo -m on the served volume: %v\n%s", err, b)
	}
	// Every file of the tree reads back unchanged, but the patched hive.
	files := 0
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		if strings.EqualFold(rel, "Windows/System32/config/SYSTEM") {
			return nil
		}
		files++
		want, _ := os.ReadFile(p)
		got, err := os.ReadFile(filepath.Join(mnt, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s reads back changed on the served volume (%v)", rel, err)
		}
		return nil
	})
	if err != nil || files < 300 {
		t.Fatalf("compared %d files: %v", files, err)
	}
	if ok, reason := predicts(t, bin, served, "ide"); !ok {
		t.Errorf("inspect of the served disk: ide %s", reason)
	}
	if ok, _ := predicts(t, bin, img, "ide"); ok {
		t.Error("inspect of the source now predicts ide boots")
	}
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}
}

// TestXPDriversKillDuringPatching kills serve with SIGKILL at spread-out
// moments while it patches (driver files and hive) into a new overlay:
// the overlay is then absent or complete, never half-made, and a clean run
// afterwards serves exactly what an ephemeral export holds.
func TestXPDriversKillDuringPatching(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a patching server; -short")
	}
	bin := testutil.BuildKvmify(t)
	img := testutil.MkDisk(t, xpMissingTree(t), 64)
	os.Chmod(img, 0o444)
	srcHash := testutil.FileSHA256(t, img)
	dir := t.TempDir()
	ov := filepath.Join(dir, "x.ovl")

	// The patch is applied while a temporary overlay exists beside ov; a
	// clean run shows how long that is, and the kills land at random
	// moments up to four times that after it appears.
	temp := func() bool {
		for _, n := range listDir(t, dir) {
			if strings.HasPrefix(n, ".kvmify-tmp-") {
				return true
			}
		}
		return false
	}
	waitTemp := func() bool {
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
			if temp() {
				return true
			}
		}
		return false
	}
	cmd := exec.Command(bin, "serve", img, "--overlay", ov, "--unix", filepath.Join(t.TempDir(), "s.sock"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitTemp() {
		t.Fatal("no temporary overlay seen while patching")
	}
	appeared := time.Now()
	for temp() {
		time.Sleep(100 * time.Microsecond)
	}
	window := time.Since(appeared)
	cmd.Process.Kill()
	cmd.Wait()
	os.Remove(ov)

	rng := rand.New(rand.NewPCG(13, 13))
	var absent, complete, midPatch int
	const trials = 12
	for i := range trials {
		cmd := exec.Command(bin, "serve", img, "--overlay", ov, "--unix", filepath.Join(t.TempDir(), "s.sock"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitTemp() {
			t.Logf("trial %d: no temporary overlay seen", i)
		}
		delay := time.Duration(rng.Float64() * 4 * float64(window))
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		if temp() {
			midPatch++
		}
		if _, err := os.Stat(ov); err != nil {
			absent++
			continue
		}
		complete++
		assertPatchedOverlay(t, bin, ov, fmt.Sprintf("trial %d (kill after %v)", i, delay))
		os.Remove(ov)
	}
	t.Logf("%d kills within %v of the temporary overlay appearing (it lives %v): overlay absent %d, complete %d; %d left a temporary overlay",
		trials, 4*window, window, absent, complete, midPatch)
	if midPatch == 0 {
		t.Errorf("no kill landed while patching; the test proves nothing")
	}

	serveBriefly(t, bin, "", img, "--overlay", ov)
	if got := listDir(t, dir); !slices.Equal(got, []string{"x.ovl"}) {
		t.Errorf("files left beside the overlay: %v", got)
	}
	got, want := filepath.Join(t.TempDir(), "got.raw"), filepath.Join(t.TempDir(), "want.raw")
	if _, stderr, code := kv(t, bin, "", "export", img, got, "--overlay", ov); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	if _, stderr, code := kv(t, bin, "", "export", img, want, "--ephemeral"); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	// The two runs' clocks differ, so compare what ntfs-3g reads.
	for _, f := range []string{"/Windows/System32/drivers/intelide.sys", "/Windows/System32/drivers/pciidex.sys"} {
		if a, b := ntfscat(t, partition(t, got), f), ntfscat(t, partition(t, want), f); !bytes.Equal(a, b) {
			t.Errorf("%s differs between the overlay patched after the kills and a clean export", f)
		}
	}
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestXPDriversMount: mount's disk.img holds the created drivers (ntfscat
// reads them byte-equal to cabextract's output) and its report.json lists
// them.
func TestXPDriversMount(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; -short")
	}
	bin := testutil.BuildKvmify(t)
	tree := xpMissingTree(t)
	img := testutil.MkDisk(t, tree, 64)
	os.Chmod(img, 0o444)
	srcHash := testutil.FileSHA256(t, img)
	c := mountAndCopy(t, bin, img, "ide")
	var rep struct {
		Patch struct {
			Created []struct {
				Path    string `json:"path"`
				SHA256  string `json:"sha256"`
				Cabinet string `json:"cabinet"`
				Member  string `json:"member"`
			} `json:"created_files"`
		} `json:"patch"`
	}
	if err := json.Unmarshal(c.report, &rep); err != nil {
		t.Fatalf("report.json: %v\n%s", err, c.report)
	}
	if len(rep.Patch.Created) != 2 {
		t.Fatalf("report.json lists %d created files:\n%s", len(rep.Patch.Created), c.report)
	}
	part := partition(t, c.disk)
	cache := filepath.Join(tree, "Windows", "Driver Cache", "i386")
	for _, f := range rep.Patch.Created {
		got := ntfscat(t, part, "/"+strings.ReplaceAll(f.Path, `\`, "/"))
		want := testutil.Cabextract(t, filepath.Join(cache, filepath.Base(strings.ReplaceAll(f.Cabinet, `\`, "/"))), f.Member)
		if !bytes.Equal(got, want) || sum256(got) != f.SHA256 {
			t.Errorf("%s: mount shows %s, cabextract %s, report %s", f.Path, sum256(got), sum256(want), f.SHA256)
		}
	}
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}
}
