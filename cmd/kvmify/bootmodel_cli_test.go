package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestServeRefusesAFixThatCannotBoot: on an XP disk without pciidex.sys
// (which intelide.sys and pciide.sys import) and with no driver cache to
// take it from, serve refuses, naming the file, before creating anything;
// --force-unbootable applies the fix and the report records the prediction
// before and after.
func TestServeRefusesAFixThatCannotBoot(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	tree := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys", "intelide.sys", "pciide.sys", "disk.sys")
	img := testutil.MkDisk(t, tree, 32)
	os.Chmod(img, 0o444)
	sum := testutil.FileSHA256(t, img)
	dir := t.TempDir()
	ov := filepath.Join(dir, "ov")
	msg := runFail(t, bin, "serve", img, "--overlay", ov, "--unix", filepath.Join(dir, "s.sock"))
	if !strings.Contains(strings.ToLower(msg), "pciidex.sys") || !strings.Contains(msg, "--force-unbootable") {
		t.Fatalf("the refusal does not name pciidex.sys and the override:\n%s", msg)
	}
	if _, err := os.Stat(ov); err == nil {
		t.Fatal("a refused fix left an overlay")
	}
	rep := filepath.Join(dir, "report.json")
	out := filepath.Join(dir, "out.raw")
	s := exec.Command(bin, "export", img, out, "--ephemeral", "--force-unbootable", "--report", rep)
	if b, err := s.CombinedOutput(); err != nil {
		t.Fatalf("export --force-unbootable: %v\n%s", err, b)
	}
	var r struct {
		Patch struct {
			PB *struct{ Verdict, Reason string } `json:"prediction_before"`
			PA *struct{ Verdict, Reason string } `json:"prediction_after"`
		} `json:"patch"`
	}
	b, _ := os.ReadFile(rep)
	if err := json.Unmarshal(b, &r); err != nil || r.Patch.PB == nil || r.Patch.PA == nil {
		t.Fatalf("report lacks the predictions: %v\n%s", err, b)
	}
	if r.Patch.PB.Verdict != "0x7B" || r.Patch.PA.Verdict != "0x7B" || !strings.Contains(strings.ToLower(r.Patch.PA.Reason), "pciidex") {
		t.Errorf("predictions recorded: before %+v after %+v", r.Patch.PB, r.Patch.PA)
	}
	if testutil.FileSHA256(t, img) != sum {
		t.Fatal("the source changed")
	}
}

// TestTargetThatAlreadyBootsIsServedUnchanged: Windows 7 boots on ide as it
// is, so exporting it patched for ide writes the source's bytes exactly.
func TestTargetThatAlreadyBootsIsServedUnchanged(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "win7-sp1-x64.SYSTEM")
	out := filepath.Join(t.TempDir(), "out.raw")
	b, err := exec.Command(bin, "export", img, out, "--target", "ide", "--ephemeral").CombinedOutput()
	if err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}
	if testutil.FileSHA256(t, out) != testutil.FileSHA256(t, img) {
		t.Fatalf("Windows 7 for ide was not served byte-identical to the source:\n%s", b)
	}
}
