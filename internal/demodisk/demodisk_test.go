package demodisk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/registry"
	"github.com/kvmify/kvmify/windows"
)

func TestDemoHiveIsXPThatNeedsTheFix(t *testing.T) {
	b, err := SystemHive(time.Date(2008, 4, 14, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	h, err := registry.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	sys := bootfix.FromRegistry(h)
	v, err := bootfix.FromSystem(sys)
	if err != nil || v.Major != 5 {
		t.Fatalf("version from the hive: %v %v, want NT 5.x", v, err)
	}
	facts := bootfix.Facts{Version: v, FileExists: func(string) bool { return true }}
	p, err := bootfix.Predict(sys, facts, bootfix.TargetIDE)
	if err != nil || p.OK {
		t.Fatalf("demo hive predicted to boot on ide before the fix: %+v %v", p, err)
	}
	cs, err := bootfix.ComputeChanges(sys, facts, bootfix.TargetIDE, nil)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := windows.RegistryEditor(b, cs.Changes)
	if err != nil {
		t.Fatal(err)
	}
	if len(patched) != len(b) {
		t.Errorf("patching grew the hive file from %d to %d bytes; the slack should take the new bins", len(b), len(patched))
	}
	ph, err := registry.Open(patched)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := bootfix.Predict(bootfix.FromRegistry(ph), facts, bootfix.TargetIDE); err != nil || !p.OK {
		t.Fatalf("patched demo hive does not boot on ide: %+v %v", p, err)
	}

	// libhivex, the independent reader, sees the keys the demo relies on.
	hivexget := testutil.RequireTool(t, "hivexget")
	f := filepath.Join(t.TempDir(), "SYSTEM")
	os.WriteFile(f, b, 0o644)
	out, err := exec.Command(hivexget, f, `ControlSet001\Services\PCIIde`, "Start").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "4" {
		t.Fatalf("hivexget PCIIde Start: %q %v", out, err)
	}
	out, err = exec.Command(hivexget, f, `ControlSet001\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7111`, "Service").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "intelide" {
		t.Fatalf("hivexget 7111 Service: %q %v", out, err)
	}
}
