package testutil

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// EWFAcquire turns the raw disk image raw into an E01 set named
// dir/NAME.E01, … with ewfacquire (ewf-tools), unattended, storing MD5 and
// SHA-1; extra arguments (compression "-c deflate:best", segment size
// "-S 1M", format "-f encase5") follow. It returns the segment files in
// order.
func EWFAcquire(t testing.TB, raw, dir, name string, extra ...string) []string {
	t.Helper()
	tool := RequireTool(t, "ewfacquire")
	target := filepath.Join(dir, name)
	args := append([]string{"-u", "-q", "-d", "sha1", "-t", target}, extra...)
	args = append(args, raw)
	if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("ewfacquire %v: %v\n%s", args, err, out)
	}
	segs, err := filepath.Glob(target + ".[EeSs]*")
	if err != nil || len(segs) == 0 {
		t.Fatalf("ewfacquire made no segment files (%v)", err)
	}
	return segs
}
