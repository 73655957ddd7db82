package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// DummyDriver is the content of the driver files WindowsTree writes.
const DummyDriver = "MZ dummy driver"

// CopyFile copies a file's content.
func CopyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// StackDrivers are the driver files every corpus install has on its boot
// path besides the controller drivers a test names: the class and port
// libraries the storage drivers import and the disk and volume class
// filters of the corpus hives. WindowsTree always writes them, so that a
// test's driver list is about the controller; a test about one of these
// removes it from the tree.
var StackDrivers = []string{
	"classpnp.sys", "ataport.sys", "storport.sys",
	"partmgr.sys", "volsnap.sys", "fvevol.sys", "rdyboost.sys", "iorate.sys", "EhStorClass.sys", "stdcfltn.sys",
}

// WindowsTree lays out a Windows-like volume in a temp dir: the corpus hive
// as Windows\System32\config\SYSTEM, its logs beside it (each suffix, such
// as ".LOG1", names corpus file hive+suffix and SYSTEM+suffix), and driver
// files (names such as "atapi.sys", and StackDrivers) holding DummyDriver.
func WindowsTree(t testing.TB, hive string, logs []string, drivers ...string) string {
	t.Helper()
	root := t.TempDir()
	cfg := filepath.Join(root, "Windows", "System32", "config")
	drv := filepath.Join(root, "Windows", "System32", "drivers")
	for _, d := range []string{cfg, drv} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, suffix := range append([]string{""}, logs...) {
		CopyFile(t, CorpusFile(t, hive+suffix), filepath.Join(cfg, "SYSTEM"+suffix))
	}
	for _, d := range append(append([]string(nil), StackDrivers...), drivers...) {
		if err := os.WriteFile(filepath.Join(drv, d), []byte(DummyDriver), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// MkDisk builds a whole-disk image (MBR, NTFS partition at 1 MiB holding
// tree, serial-printing boot code) with scripts/mkdisk.sh. It needs root,
// FUSE and ntfs-3g: it skips without them on a developer machine and fails
// under CI.
func MkDisk(t testing.TB, tree string, sizeMB int) string {
	t.Helper()
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk"} {
		RequireTool(t, tool)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	cmd := exec.Command(filepath.Join(RepoRoot(), "scripts", "mkdisk.sh"), img, fmt.Sprint(sizeMB), tree)
	if out, err := cmd.CombinedOutput(); err != nil {
		if InCI() {
			t.Fatalf("mkdisk.sh: %v\n%s", err, out)
		}
		t.Skipf("mkdisk.sh could not build a disk here (needs root and FUSE): %v\n%s", err, out)
	}
	return img
}
