package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/internal/testutil"
)

// planChange is a registry change as "plan --json" prints it.
type planChange struct {
	Key   string     `json:"key"`
	Value string     `json:"value"`
	Op    bootfix.Op `json:"op"`
	Type  string     `json:"type"`
	Old   any        `json:"old"`
	New   any        `json:"new"`
}

// rawValue turns a plan's human-readable new value back into registry
// bytes, so that an independent writer (hivex) can apply the plan.
func rawValue(t *testing.T, c planChange) (uint32, string) {
	t.Helper()
	var v bootfix.Value
	switch c.Type {
	case "REG_DWORD":
		v = bootfix.DWORD(uint32(c.New.(float64)))
	case "REG_SZ":
		v = bootfix.String(bootfix.TypeSZ, c.New.(string))
	case "REG_EXPAND_SZ":
		v = bootfix.String(bootfix.TypeExpandSZ, c.New.(string))
	case "REG_MULTI_SZ":
		var ss []string
		for _, s := range c.New.([]any) {
			ss = append(ss, s.(string))
		}
		v = bootfix.MultiString(ss)
	default:
		t.Fatalf("change %+v: unexpected type", c)
	}
	return v.Type, hex.EncodeToString(v.Data)
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return out
}

// TestEndToEndDisk builds an MBR+NTFS disk holding a real SYSTEM hive,
// checks that inspect predicts 0x7B, applies the plan's registry changes
// with hivex to the hive read out by ntfscat, writes it back with ntfscp
// into a copy of the disk, and checks that inspect on the copy predicts
// boots, that hivex reads every planned value, and that the source disk is
// unchanged.
func TestEndToEndDisk(t *testing.T) {
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk", "ntfscat", "ntfscp"} {
		testutil.RequireTool(t, tool)
	}
	testutil.RequirePython3Module(t, "hivex")
	bin := testutil.BuildKvmify(t)
	for _, tc := range []struct {
		hive    string
		sizeMB  int
		target  string
		drivers []string
	}{
		{"xp-sp3-x86.SYSTEM", 24, "ide", []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys"}},
		{"win7-sp1-x64.SYSTEM", 48, "ahci", []string{"msahci.sys", "atapi.sys", "disk.sys"}},
	} {
		t.Run(tc.hive, func(t *testing.T) {
			dir := t.TempDir()
			tree := testutil.WindowsTree(t, tc.hive, nil, tc.drivers...)
			img := testutil.MkDisk(t, tree, tc.sizeMB)
			srcSum := testutil.FileSHA256(t, img)

			if v := inspectTarget(t, bin, img, tc.target); v.OK {
				t.Fatalf("inspect before: %s boots, want 0x7B (%s)", tc.target, v.Reason)
			}
			var plan struct {
				Changes []planChange `json:"registry_changes"`
				Extents []struct {
					Offset int64  `json:"offset"`
					Length int64  `json:"length"`
					What   string `json:"what"`
				} `json:"extents"`
				After *targetVerdict `json:"after"`
			}
			if err := json.Unmarshal(run(t, bin, "plan", "--json", "--target", tc.target, img), &plan); err != nil {
				t.Fatal(err)
			}
			if len(plan.Changes) == 0 {
				t.Fatal("plan has no registry changes")
			}
			if plan.After == nil || !plan.After.OK || len(plan.Extents) == 0 {
				t.Errorf("plan: after %+v, %d extents; want boots with disk extents", plan.After, len(plan.Extents))
			}
			for _, e := range plan.Extents {
				// The partition starts at 1 MiB and the hive keeps its size, so
				// only its data changes, besides XP's boot-sector geometry
				// fields (heads, sectors per track: 4 bytes at 0x18).
				if strings.Contains(e.What, "boot sector") && e.Length == 2 && e.Offset%512 >= 0x18 && e.Offset%512 < 0x1c {
					continue
				}
				if e.Offset < 1<<20 || e.What != "data" {
					t.Errorf("extent %+v outside the partition or not hive data", e)
				}
			}

			// Patch a copy: partition out, hive out, hivex edits, hive in, partition in.
			part := filepath.Join(dir, "part.img")
			run(t, "dd", "if="+img, "of="+part, "bs=1M", "skip=1", "status=none")
			hive := filepath.Join(dir, "SYSTEM")
			if err := os.WriteFile(hive, run(t, "ntfscat", part, "Windows/System32/config/SYSTEM"), 0o644); err != nil {
				t.Fatal(err)
			}
			var in []map[string]any
			for _, c := range plan.Changes {
				m := map[string]any{"key": c.Key, "value": c.Value, "op": c.Op}
				if c.Op == bootfix.OpSet {
					m["type"], m["data"] = rawValue(t, c)
				}
				in = append(in, m)
			}
			got, err := testutil.HivexApply(t, hive, in, false)
			if err != nil {
				t.Fatalf("hivex: %v", err)
			}
			for i, c := range in {
				if c["op"] == bootfix.OpSet && (got[i] == nil || got[i].Data != c["data"]) {
					t.Errorf("hivex reads %s\\%s as %+v, want %v", c["key"], c["value"], got[i], c["data"])
				}
			}
			run(t, "ntfscp", "-f", "-q", part, hive, "Windows/System32/config/SYSTEM")
			patched := filepath.Join(dir, "patched.img")
			run(t, "cp", "--sparse=always", img, patched)
			run(t, "dd", "if="+part, "of="+patched, "bs=1M", "seek=1", "conv=notrunc", "status=none")

			if v := inspectTarget(t, bin, patched, tc.target); !v.OK {
				t.Errorf("inspect after: %s is 0x7B: %s", tc.target, v.Reason)
			}
			// Every driver file reads back unchanged from the patched disk.
			run(t, "dd", "if="+patched, "of="+part, "bs=1M", "skip=1", "status=none")
			for _, d := range tc.drivers {
				if out := run(t, "ntfscat", part, "Windows/System32/drivers/"+d); string(out) != testutil.DummyDriver {
					t.Errorf("%s reads back as %q", d, out)
				}
			}
			if s := testutil.FileSHA256(t, img); s != srcSum {
				t.Errorf("source disk changed: %s → %s", srcSum, s)
			}
		})
	}
}

type targetVerdict struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

func inspectTarget(t *testing.T, bin, img, target string) targetVerdict {
	t.Helper()
	var rep struct {
		Partitions []struct {
			Index   int    `json:"index"`
			Error   string `json:"error"`
			Windows *struct {
				Targets map[string]targetVerdict `json:"targets"`
			} `json:"windows"`
		} `json:"partitions"`
	}
	out := run(t, bin, "inspect", "--json", img)
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Partitions) != 1 || rep.Partitions[0].Index != 1 || rep.Partitions[0].Windows == nil {
		t.Fatalf("inspect %s: %s", img, out)
	}
	v, ok := rep.Partitions[0].Windows.Targets[target]
	if !ok {
		t.Fatalf("inspect has no target %s: %s", target, out)
	}
	return v
}
