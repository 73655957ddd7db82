package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

type inspectOut struct {
	Partitions []struct {
		Index   int    `json:"index"`
		NTFS    bool   `json:"ntfs"`
		Error   string `json:"error"`
		Windows *struct {
			Version    string `json:"version"`
			Build      uint32 `json:"build"`
			Arch       string `json:"arch"`
			ControlSet string `json:"control_set"`
			HiveState  string `json:"hive_state"`
			Targets    map[string]struct {
				OK     bool   `json:"ok"`
				Reason string `json:"reason"`
			} `json:"targets"`
		} `json:"windows"`
	} `json:"partitions"`
}

func TestInspectJSONOnTrees(t *testing.T) {
	for _, tc := range []struct {
		hive       string
		logs       []string
		drivers    []string
		hiveState  string
		arch       string
		ide, ahci  bool
		ahciReason string
	}{
		{"xp-sp3-x86.SYSTEM", nil, []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys"}, "clean", "x86", false, false, "no CriticalDeviceDatabase entry"},
		{"win7-sp1-x64.SYSTEM", nil, []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys", "msahci.sys"}, "clean", "AMD64", true, false, "msahci Start=3"},
		{"win10-1709-x64.SYSTEM", []string{".LOG1", ".LOG2"}, []string{"storahci.sys", "disk.sys"}, "dirty-recoverable", "AMD64", false, false, "StartOverride"},
	} {
		root := testutil.WindowsTree(t, tc.hive, tc.logs, tc.drivers...)
		var out bytes.Buffer
		if err := runInspect(context.Background(), inspectOptions{JSON: true}, []string{root}, &out); err != nil {
			t.Fatalf("%s: %v", tc.hive, err)
		}
		var got inspectOut
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.hive, err, out.String())
		}
		if len(got.Partitions) != 1 || got.Partitions[0].Windows == nil {
			t.Fatalf("%s: %s", tc.hive, out.String())
		}
		w := got.Partitions[0].Windows
		if w.HiveState != tc.hiveState || w.Arch != tc.arch || w.ControlSet != "ControlSet001" {
			t.Errorf("%s: hive %s arch %s cs %s", tc.hive, w.HiveState, w.Arch, w.ControlSet)
		}
		if w.Targets["ide"].OK != tc.ide || w.Targets["ahci"].OK != tc.ahci || !strings.Contains(w.Targets["ahci"].Reason, tc.ahciReason) {
			t.Errorf("%s: targets %+v", tc.hive, w.Targets)
		}
	}
}

func TestPlanJSONXP(t *testing.T) {
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys")
	var out bytes.Buffer
	if err := runPlan(context.Background(), planOptions{JSON: true}, []string{root}, &out); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Target  string `json:"target"`
		Changes []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
			Old   any    `json:"old"`
			New   any    `json:"new"`
		} `json:"registry_changes"`
		Extents []any `json:"extents"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Target != "ide" {
		t.Errorf("default target for XP = %s", got.Target)
	}
	var cddb7010, pciideStart bool
	for _, c := range got.Changes {
		if strings.EqualFold(c.Key, `ControlSet001\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7010`) && c.Value == "Service" && c.Old == nil && c.New == "intelide" {
			cddb7010 = true
		}
		// The corpus README: PCIIde Start 4.
		if strings.EqualFold(c.Key, `ControlSet001\Services\PCIIde`) && c.Value == "Start" && c.Old == float64(4) && c.New == float64(0) {
			pciideStart = true
		}
		if strings.EqualFold(c.Key, `ControlSet001\Services\atapi`) && c.Value == "Start" {
			t.Errorf("atapi Start is already 0 but the plan changes it: %+v", c)
		}
	}
	if !cddb7010 || !pciideStart {
		t.Errorf("plan lacks the 7010 CDDB entry (%v) or PCIIde Start 4→0 (%v):\n%s", cddb7010, pciideStart, out.String())
	}
}

func TestPlanRefusesHibernated(t *testing.T) {
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys")
	if err := os.WriteFile(filepath.Join(root, "hiberfil.sys"), []byte("hibr\x00\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := runPlan(context.Background(), planOptions{}, []string{root}, &out)
	if err == nil || !strings.Contains(err.Error(), "--allow-hibernated") {
		t.Fatalf("plan on a hibernated system: %v", err)
	}
	opts := planOptions{}
	opts.Patch.Overrides.AllowHibernated = true
	if err := runPlan(context.Background(), opts, []string{root}, &out); err != nil {
		t.Errorf("with --allow-hibernated: %v", err)
	}
}

// TestInspectCLIExitCodes drives the binary: usage errors exit 2, a missing
// image exits 1, and inspect of a mkdisk.sh image finds the NTFS partition.
func TestInspectCLIExitCodes(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	root := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"plan", root, "--target", "scsi"}, 2},
		{[]string{"plan", root, "--extras", "bogus"}, 2},
		{[]string{"inspect"}, 2},
		{[]string{"inspect", filepath.Join(root, "nope")}, 1},
		{[]string{"plan", "--target", "ahci", root}, 1}, // XP has no AHCI profile
		{[]string{"inspect", root}, 0},
	} {
		err := exec.Command(bin, tc.args...).Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("kvmify %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}

// A disk formatted by Windows, without a Windows install: inspect reads its
// NTFS partition and reports no install and no error.
func TestInspectWindowsFormattedDisk(t *testing.T) {
	img := testutil.CorpusFile(t, "disk-mbr-ntfs-win-32M.raw")
	var out bytes.Buffer
	if err := runInspect(context.Background(), inspectOptions{JSON: true}, []string{img}, &out); err != nil {
		t.Fatal(err)
	}
	var got inspectOut
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	// Corpus README: one NTFS partition (type 0x07) at LBA 128.
	if len(got.Partitions) != 1 || got.Partitions[0].Index != 1 || !got.Partitions[0].NTFS ||
		got.Partitions[0].Error != "" || got.Partitions[0].Windows != nil {
		t.Errorf("inspect: %s", out.String())
	}
}
