package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/windows"
	"github.com/spf13/cobra"
)

// planOptions holds the flags of "plan".
type planOptions struct {
	JSON      bool
	Target    string
	Partition int // -1: the only partition with Windows
	Extras    string
	Overrides windows.Overrides
}

func newPlanCmd() *cobra.Command {
	opts := planOptions{Partition: -1}
	cmd := &cobra.Command{
		Use:   "plan IMAGE",
		Short: "Show every registry change and disk extent the boot fix would make, touching nothing",
		Long: `Compute the boot fix for the Windows install on IMAGE and show every
registry change (key, value, old → new) for each control set Select
references, and every disk extent (offset, length, what) the patched SYSTEM
hive would occupy. Nothing is written.

IMAGE is a disk image or block device, or a directory holding a mounted
Windows volume (partition 0). --target defaults to ide for Windows NT 5.x
(XP/2003) and ahci for Vista and later.

Patching is refused (exit 1, with what to do) for a hibernated or Fast Startup
system (--allow-hibernated), an unclean NTFS volume (--allow-unclean), a dirty
hive its logs cannot recover (--allow-dirty-hive) and BitLocker (no override).

--extras adds opt-in changes: autoreboot (CrashControl\AutoReboot 0),
cpu-power (intelppm, amdppm, processr, AmdK8 Start 4; alias intelppm), filters (drop class filters naming missing services).

With --json: {"target", "profile", "registry_changes": [{"key", "value",
"op", "type", "old", "new", "why"}], "extents": [{"offset", "length",
"what"}], "missing_files", "notes", "before", "after", ...}.

Exit status: 0 success, 1 failure or refusal, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.JSON, "json", false, "print JSON")
	f.StringVar(&opts.Target, "target", "", "QEMU disk controller: ide or ahci (default by Windows version)")
	f.IntVar(&opts.Partition, "partition", -1, "partition index holding Windows (default: the only one)")
	f.StringVar(&opts.Extras, "extras", "", "comma-separated opt-in extras: autoreboot,cpu-power,filters")
	f.BoolVar(&opts.Overrides.AllowHibernated, "allow-hibernated", false, "patch a hibernated or Fast Startup system")
	f.BoolVar(&opts.Overrides.AllowUnclean, "allow-unclean", false, "patch a volume with an unclean $LogFile or dirty flag")
	f.BoolVar(&opts.Overrides.AllowDirtyHive, "allow-dirty-hive", false, "patch a dirty hive its logs cannot recover")
	return cmd
}

// runPlan computes and prints the plan for args[0].
func runPlan(ctx context.Context, opts planOptions, args []string, stdout io.Writer) error {
	p, vol, err := planImage(args[0], patchFlags{Target: opts.Target, Partition: opts.Partition,
		Extras: opts.Extras, Overrides: opts.Overrides})
	if err != nil {
		return err
	}
	rep := planReport(args[0], vol, p)
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printPlan(stdout, rep)
}

// pickVolume selects the partition to patch: the one named, or the only one
// holding Windows.
func pickVolume(vols []windows.Volume, index int) (windows.Volume, error) {
	var with []windows.Volume
	for _, v := range vols {
		if index >= 0 && v.Partition.Index == index {
			if v.Err != nil {
				return v, fmt.Errorf("partition %d: %w", index, v.Err)
			}
			if len(v.Installs) == 0 {
				return v, fmt.Errorf("partition %d holds no Windows install", index)
			}
			return v, nil
		}
		if len(v.Installs) > 0 {
			with = append(with, v)
		}
	}
	if index >= 0 {
		return windows.Volume{}, usagef("--partition %d: no such partition", index)
	}
	switch len(with) {
	case 1:
		return with[0], nil
	case 0:
		var errs []string
		for _, v := range vols {
			if v.Err != nil {
				errs = append(errs, fmt.Sprintf("partition %d: %v", v.Partition.Index, v.Err))
			}
		}
		if len(errs) > 0 {
			return windows.Volume{}, fmt.Errorf("no Windows install found (%s)", strings.Join(errs, "; "))
		}
		return windows.Volume{}, fmt.Errorf("no Windows install found")
	}
	var idx []string
	for _, v := range with {
		idx = append(idx, fmt.Sprint(v.Partition.Index))
	}
	return windows.Volume{}, usagef("Windows is on partitions %s; choose one with --partition", strings.Join(idx, ", "))
}

type planJSON struct {
	Image        string            `json:"image"`
	Partition    int               `json:"partition"`
	Dir          string            `json:"dir"`
	Version      string            `json:"version"`
	HiveState    windows.HiveState `json:"hive_state"`
	Target       bootfix.Target    `json:"target"`
	Profile      string            `json:"profile"`
	ControlSets  []string          `json:"control_sets"`
	Extras       []bootfix.Extra   `json:"extras"`
	Changes      []changeJSON      `json:"registry_changes"`
	Extents      []extentJSON      `json:"extents"`
	Writes       int               `json:"writes"`
	MissingFiles []missingFileJSON `json:"missing_files"`
	Before       predictionJSON    `json:"before"`
	After        *predictionJSON   `json:"after,omitempty"`
	HiveSize     int               `json:"hive_size"`
	PatchedSize  int               `json:"patched_hive_size,omitempty"`
	Notes        []string          `json:"notes"`
}

type changeJSON struct {
	Key   string     `json:"key"`
	Value string     `json:"value"`
	Op    bootfix.Op `json:"op"`
	Type  string     `json:"type,omitempty"`
	Old   any        `json:"old"`
	New   any        `json:"new"`
	Why   string     `json:"why"`
	// Detail names the broken link a boot-fix change repairs beyond the
	// profile (a dead filter entry, a third-party CDDB entry).
	Detail string `json:"detail,omitempty"`
}

type missingFileJSON struct {
	Path string `json:"path"`
	From string `json:"from"`
}

type extentJSON struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	What   string `json:"what"`
}

func planReport(image string, vol windows.Volume, p *windows.Plan) planJSON {
	r := planJSON{Image: image, Partition: vol.Partition.Index, Dir: p.Install.Dir,
		Version: p.Install.Version.String(), HiveState: p.Install.HiveState, Target: p.Target,
		Profile: p.Profile, Extras: p.Extras, Writes: len(p.Writes), MissingFiles: []missingFileJSON{},
		Before: predictionReport(p.Before), HiveSize: len(p.OriginalHive), PatchedSize: len(p.PatchedHive),
		Notes: p.Notes, Changes: []changeJSON{}, Extents: []extentJSON{}}
	for _, m := range p.MissingFiles {
		r.MissingFiles = append(r.MissingFiles, missingFileJSON{Path: m.Path, From: m.From})
	}
	for _, cs := range p.ControlSets {
		r.ControlSets = append(r.ControlSets, cs.Name)
	}
	// The plan always predicts after itself (an empty plan: as before).
	a := predictionReport(p.After)
	r.After = &a
	for _, c := range p.Changes {
		j := changeJSON{Key: c.Key, Value: c.Value, Op: c.Op, Old: valueJSON(c.Old), New: valueJSON(c.New), Why: c.Why, Detail: c.Detail}
		if c.New != nil {
			j.Type = typeName(c.New.Type)
		} else if c.Old != nil {
			j.Type = typeName(c.Old.Type)
		}
		r.Changes = append(r.Changes, j)
	}
	for _, e := range p.Extents {
		r.Extents = append(r.Extents, extentJSON{Offset: e.Offset, Length: e.Length, What: e.What})
	}
	return r
}

// valueJSON renders a value for people and scripts: DWORDs as numbers,
// strings as strings, multi-strings as arrays, anything else as hex; nil
// stays null (absent).
func valueJSON(v *bootfix.Value) any {
	if v == nil {
		return nil
	}
	switch v.Type {
	case bootfix.TypeDWORD:
		if n, ok := v.Uint32(); ok {
			return n
		}
	case bootfix.TypeSZ, bootfix.TypeExpandSZ:
		return v.Text()
	case bootfix.TypeMultiSZ:
		return v.Strings()
	}
	return hex.EncodeToString(v.Data)
}

func typeName(t uint32) string {
	switch t {
	case bootfix.TypeSZ:
		return "REG_SZ"
	case bootfix.TypeExpandSZ:
		return "REG_EXPAND_SZ"
	case bootfix.TypeBinary:
		return "REG_BINARY"
	case bootfix.TypeDWORD:
		return "REG_DWORD"
	case bootfix.TypeMultiSZ:
		return "REG_MULTI_SZ"
	}
	return fmt.Sprintf("0x%x", t)
}

func printPlan(w io.Writer, r planJSON) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s partition %d: %s (Windows %s), SYSTEM hive %s\n", r.Image, r.Partition, r.Dir, r.Version, r.HiveState)
	fmt.Fprintf(&b, "target %s, profile %s, control sets %s\n", r.Target, r.Profile, strings.Join(r.ControlSets, ", "))
	fmt.Fprintf(&b, "before: %s %s\n", r.Before.Verdict, r.Before.Reason)
	if r.After != nil {
		fmt.Fprintf(&b, "after:  %s %s\n", r.After.Verdict, r.After.Reason)
	}
	fmt.Fprintf(&b, "registry changes (%d):\n", len(r.Changes))
	for _, c := range r.Changes {
		old, nw := "(absent)", "(absent)"
		if c.Old != nil {
			b, _ := json.Marshal(c.Old)
			old = string(b)
		}
		if c.New != nil {
			b, _ := json.Marshal(c.New)
			nw = string(b)
		}
		if c.Op == bootfix.OpDelete {
			fmt.Fprintf(&b, "  delete %s\\%s (was %s)", c.Key, c.Value, old)
		} else {
			fmt.Fprintf(&b, "  %s\\%s: %s → %s %s", c.Key, c.Value, old, c.Type, nw)
		}
		if c.Why != "boot fix" {
			fmt.Fprintf(&b, " [%s]", c.Why)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "disk extents (%d):\n", len(r.Extents))
	for _, e := range r.Extents {
		fmt.Fprintf(&b, "  offset %d length %d: %s\n", e.Offset, e.Length, e.What)
	}
	for _, m := range r.MissingFiles {
		fmt.Fprintf(&b, "missing driver file %s (from %s)\n", m.Path, m.From)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
