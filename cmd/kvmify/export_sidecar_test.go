package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestExportQCOW2Properties: a qcow2 export carries the launch facts as
// OpenStack image properties beside it, for the controller the fix was made
// for; an existing properties file is refused (nothing written) unless
// --force.
func TestExportQCOW2Properties(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	for _, tc := range []struct {
		hive, target, machine, bus string
	}{
		{"xp-sp3-x86.SYSTEM", "ide", "pc", "ide"},
		{"win7-sp1-x64.SYSTEM", "ahci", "q35", "sata"},
	} {
		img := winDisk(t, tc.hive)
		dir := t.TempDir()
		out := filepath.Join(dir, "out.qcow2")
		run(t, bin, "export", "--format", "qcow2", "--target", tc.target, "--ephemeral", img, out)
		var props map[string]string
		b, err := os.ReadFile(out + ".properties.json")
		if err != nil || json.Unmarshal(b, &props) != nil {
			t.Fatalf("%s: properties: %v\n%s", tc.hive, err, b)
		}
		want := map[string]string{"hw_machine_type": tc.machine, "hw_disk_bus": tc.bus, "hw_firmware_type": "bios", "os_type": "windows"}
		for k, v := range want {
			if props[k] != v {
				t.Errorf("%s: %s = %q, want %q (%v)", tc.hive, k, props[k], v, props)
			}
		}
		os.Remove(out)
		msg := runFail(t, bin, "export", "--format", "qcow2", "--target", tc.target, "--ephemeral", img, out)
		if !strings.Contains(msg, "properties") {
			t.Errorf("an existing properties file was not named: %s", msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("a refused export wrote OUT")
		}
		run(t, bin, "export", "--format", "qcow2", "--target", tc.target, "--ephemeral", "--force", img, out)
	}
}
