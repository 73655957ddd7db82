package testutil

import (
	"encoding/json"
	"errors"
	"os/exec"
	"testing"
)

// QemuMapEntry is one run of `qemu-img map --output=json`.
type QemuMapEntry struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Data   bool  `json:"data"`
	Zero   bool  `json:"zero"`
}

// QemuImgMap runs `qemu-img map` on a raw file (or an NBD URI) and returns
// the runs it reports, the independent allocation oracle of the tests.
func QemuImgMap(t testing.TB, target string) []QemuMapEntry {
	t.Helper()
	qemuImg := RequireTool(t, "qemu-img")
	out, err := exec.Command(qemuImg, "map", "--output=json", "-f", "raw", target).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("qemu-img map %s: %v\n%s", target, err, ee.Stderr)
		}
		t.Fatalf("qemu-img map %s: %v", target, err)
	}
	return ParseQemuImgMap(t, out)
}

// ParseQemuImgMap decodes the output of `qemu-img map --output=json`.
func ParseQemuImgMap(t testing.TB, out []byte) []QemuMapEntry {
	t.Helper()
	var entries []QemuMapEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("qemu-img map output: %v\n%s", err, out)
	}
	return entries
}
