package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// XPDriver is a fake x86 driver image, name and build in its code and
// version 5.1.build.rev in its version resource, as an XP driver cabinet
// would hold.
func XPDriver(name string, build, rev uint16) []byte {
	return PEWithVersion(5, 1, build, rev, []byte(fmt.Sprintf("%s build %d.%d\x00", name, build, rev)))
}

// Gcab builds an MSZIP cabinet at path holding files (name → content) with
// `gcab -c -z`, storing names without directories.
func Gcab(t testing.TB, path string, files map[string][]byte) {
	t.Helper()
	bin := RequireTool(t, "gcab")
	src := t.TempDir()
	args := []string{"-c", "-z", "-n", path}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcab %v: %v\n%s", args, err, b)
	}
}

// Cabextract returns a cabinet member as cabextract extracts it.
func Cabextract(t testing.TB, cabPath, member string) []byte {
	t.Helper()
	bin := RequireTool(t, "cabextract")
	out, err := exec.Command(bin, "-q", "-p", "-F", member, cabPath).Output()
	if err != nil {
		t.Fatalf("cabextract -F %s %s: %v", member, cabPath, err)
	}
	return out
}

// XPTree is WindowsTree for the XP SP3 corpus hive with the driver files
// present (DummyDriver), extra other files in System32\drivers (so its
// index spans several blocks, as on a real install) and cabinets (file
// name → members, built with Gcab) in Windows\Driver Cache\i386. It
// returns the volume root.
func XPTree(t testing.TB, present []string, extra int, cabs map[string]map[string][]byte) string {
	t.Helper()
	root := WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, present...)
	drv := filepath.Join(root, "Windows", "System32", "drivers")
	for i := 0; i < extra; i++ {
		b := []byte(fmt.Sprintf("MZ other driver %d %0*d", i, 100+i*37%4000, 0))
		if err := os.WriteFile(filepath.Join(drv, fmt.Sprintf("drv%03d.sys", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(root, "Windows", "Driver Cache", "i386")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, members := range cabs {
		Gcab(t, filepath.Join(cache, name), members)
	}
	return root
}
