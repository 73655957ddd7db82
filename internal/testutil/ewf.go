package testutil

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// EWFSection returns the offset and size of the first section of type typ
// in an EWF segment file, walking the descriptor chain without checking
// it, so tests can damage a chosen structure.
func EWFSection(t testing.TB, path, typ string) (off, size int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(13); off+76 <= int64(len(b)); {
		name := strings.TrimRight(string(b[off:off+16]), "\x00")
		next := int64(binary.LittleEndian.Uint64(b[off+16:]))
		size := int64(binary.LittleEndian.Uint64(b[off+24:]))
		if name == typ {
			return off, size
		}
		if next <= off {
			break
		}
		off = next
	}
	t.Fatalf("%s has no %s section", path, typ)
	return 0, 0
}
