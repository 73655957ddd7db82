package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/pipeline"
	"github.com/kvmify/kvmify/windows"
	"github.com/spf13/cobra"
)

// planOptions holds the flags of "plan".
type planOptions struct {
	JSON  bool
	Patch pipeline.PatchOptions
}

func newPlanCmd() *cobra.Command {
	var opts planOptions
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
A partition that cannot be read (damaged NTFS metadata or hive, a truncated
image) is an error, never "no Windows": serve, mount and export refuse it
with the same message unless --no-patch.

--extras adds opt-in changes: autoreboot (CrashControl\AutoReboot 0),
cpu-power (intelppm, amdppm, processr, AmdK8 Start 4; alias intelppm), filters (drop class filters naming missing services).

With --json: {"target", "profile", "registry_changes": [{"key", "value",
"op", "type", "old", "new", "why"}], "extents": [{"offset", "length",
"what"}], "create_files": [{"path", "size", "sha256", "cabinet", "member",
"service_pack", "version", "mft_record", "clusters", "runs"}],
"missing_files", "notes", "before", "after", ...}.

For Windows XP/2003 patched for ide, the IDE drivers (atapi, intelide,
pciide, pciidex) System32\drivers lacks are taken from the install's own
Driver Cache\i386 cabinets (the highest service pack's copy) and created
in the same commit; files present are never replaced.

Exit status: 0 success, 1 failure or refusal, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.JSON, "json", false, "print JSON")
	f.StringVar(&opts.Patch.Target, "target", "", "QEMU disk controller: ide, ahci or nvme (default by Windows version)")
	f.IntVar(&opts.Patch.Partition, "partition", 0, pipeline.PartitionHelp)
	f.StringVar(&opts.Patch.Extras, "extras", "", "comma-separated opt-in extras: autoreboot,cpu-power,filters")
	f.BoolVar(&opts.Patch.Overrides.AllowHibernated, "allow-hibernated", false, "patch a hibernated or Fast Startup system")
	f.BoolVar(&opts.Patch.Overrides.AllowUnclean, "allow-unclean", false, "patch a volume with an unclean $LogFile or dirty flag")
	f.BoolVar(&opts.Patch.Overrides.AllowDirtyHive, "allow-dirty-hive", false, "patch a dirty hive its logs cannot recover")
	return cmd
}

// runPlan computes and prints the plan for args[0].
func runPlan(ctx context.Context, opts planOptions, args []string, stdout io.Writer) error {
	planned, err := pipeline.PlanImage(args[0], opts.Patch)
	if err != nil {
		return err
	}
	p, vol := planned.Plan, planned.Volume
	rep := planReport(args[0], vol, p)
	addDrivers(&rep, planned) // XP IDE driver files (plan_drivers.go)
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printPlan(stdout, rep)
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
	CreateFiles  []createFileJSON  `json:"create_files"`
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
		j := changeJSON{Key: c.Key, Value: c.Value, Op: c.Op, Old: pipeline.ValueJSON(c.Old), New: pipeline.ValueJSON(c.New), Why: c.Why, Detail: c.Detail}
		if c.New != nil {
			j.Type = pipeline.TypeName(c.New.Type)
		} else if c.Old != nil {
			j.Type = pipeline.TypeName(c.Old.Type)
		}
		r.Changes = append(r.Changes, j)
	}
	for _, e := range p.Extents {
		r.Extents = append(r.Extents, extentJSON{Offset: e.Offset, Length: e.Length, What: e.What})
	}
	return r
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
	printCreated(&b, r.CreateFiles) // plan_drivers.go
	for _, m := range r.MissingFiles {
		fmt.Fprintf(&b, "missing driver file %s (from %s)\n", m.Path, m.From)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
