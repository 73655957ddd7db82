package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestExportWithForensicReport exports the patched XP disk as raw and as a
// qcow2 backed by the source, and checks the forensic report against the
// bytes themselves.
func TestExportWithForensicReport(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; -short")
	}
	qemuImg := testutil.RequireTool(t, "qemu-img")
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	srcHash := testutil.FileSHA256(t, img)
	dir := t.TempDir()
	raw, rep := filepath.Join(dir, "out.raw"), filepath.Join(dir, "report.json")

	out, err := exec.Command(bin, "export", img, raw, "--target", "ide", "--report", rep, "--hash").CombinedOutput()
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if ok, reason := predicts(t, bin, raw, "ide"); !ok {
		t.Fatalf("exported disk predicted 0x7B: %s", reason)
	}
	changedOnlyInHive(t, img, raw)

	var r struct {
		SourceSHA256 string `json:"source_sha256"`
		SourceSize   int64  `json:"source_size"`
		Patch        struct {
			Target  string            `json:"target"`
			Changes []json.RawMessage `json:"registry_changes"`
			Extents []struct {
				Offset, Length int64
				Old            string `json:"old_sha256"`
				New            string `json:"new_sha256"`
			} `json:"extents"`
		} `json:"patch"`
	}
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.SourceSHA256 != srcHash {
		t.Errorf("report source_sha256 %s, want %s", r.SourceSHA256, srcHash)
	}
	if r.Patch.Target != "ide" || len(r.Patch.Changes) == 0 || len(r.Patch.Extents) == 0 {
		t.Fatalf("report lacks the patch: %s", b)
	}
	src, _ := os.ReadFile(img)
	dst, _ := os.ReadFile(raw)
	sum := func(p []byte) string { h := sha256.Sum256(p); return hex.EncodeToString(h[:]) }
	for _, e := range r.Patch.Extents {
		if sum(src[e.Offset:e.Offset+e.Length]) != e.Old {
			t.Errorf("extent %d+%d: old_sha256 does not match the source", e.Offset, e.Length)
		}
		if sum(dst[e.Offset:e.Offset+e.Length]) != e.New {
			t.Errorf("extent %d+%d: new_sha256 does not match the export", e.Offset, e.Length)
		}
	}

	// A qcow2 holding only the changes, backed by the untouched source.
	q := filepath.Join(dir, "out.qcow2")
	if out, err := exec.Command(bin, "export", img, q, "--target", "ide", "--format", "qcow2", "--backing").CombinedOutput(); err != nil {
		t.Fatalf("export qcow2: %v\n%s", err, out)
	}
	if out, err := exec.Command(qemuImg, "compare", "-f", "qcow2", "-F", "raw", q, raw).CombinedOutput(); err != nil {
		t.Fatalf("backed qcow2 differs from the raw export: %v\n%s", err, out)
	}
	info, _ := exec.Command(qemuImg, "info", q).Output()
	if !strings.Contains(string(info), "backing file: "+img) {
		t.Errorf("qcow2 is not backed by the source:\n%s", info)
	}
	// Refuses to overwrite.
	if err := exec.Command(bin, "export", img, raw).Run(); err == nil {
		t.Error("export over an existing file succeeded")
	}
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}
}
