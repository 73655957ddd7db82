package windows

import (
	"fmt"
	"sort"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/registry"

	"github.com/kvmify/kvmify/disk"
)

// Extent is a byte range of the disk that a Plan changes.
type Extent struct {
	Offset, Length int64
	What           string
}

// HiveEditor applies registry changes to a hive file and returns the new
// file bytes; it must not modify its input.
type HiveEditor func(hive []byte, changes []bootfix.Change) ([]byte, error)

// FileRewriter plans the writes (offsets relative to the volume) that
// replace a file's content on the volume; it writes nothing.
type FileRewriter func(path string, content []byte) ([]disk.Write, error)

// PlanOptions select what PlanPatch adds beyond the boot fix and supply the
// layers that turn changes into bytes.
type PlanOptions struct {
	Extras    []bootfix.Extra
	Overrides Overrides
	Volume    VolumeState
	// PartitionStart is the volume's byte offset on the disk, added to the
	// rewriter's volume-relative offsets.
	PartitionStart int64
	// Edit produces the patched hive; nil means RegistryEditor.
	Edit HiveEditor
	// Disk is the whole source disk, read for the XP/2000 geometry check
	// (MBR and the NTFS boot sector); nil skips the check.
	Disk disk.Reader
	// NoGeometryFix keeps the NTFS boot sector's heads and sectors per
	// track as they are even when they differ from the firmware's
	// geometry (suggested flag: --no-geometry-fix).
	NoGeometryFix bool
	// Rewrite turns the patched hive into disk writes; nil uses package
	// ntfs's planner when the install was read through OpenNTFS, and
	// otherwise the Plan has no Writes.
	Rewrite FileRewriter
}

// Plan is everything a patch would do, computed without writing anything.
type Plan struct {
	Install     *Install
	Target      bootfix.Target
	Profile     string
	ControlSets []bootfix.ControlSet
	// Booting lists the control sets that already boot and get no
	// boot-fix change.
	Booting []string
	Changes []bootfix.Change
	// MissingFiles are driver files the profile needs that the install
	// lacks (paths relative to the Windows directory); the patch alone
	// will not make such an install boot.
	MissingFiles []bootfix.MissingFile
	Extras       []bootfix.Extra
	// Before is the prediction on the hive as found, After on the patched
	// hive (equal to Before when nothing changes).
	Before, After bootfix.Prediction
	// OriginalHive is the SYSTEM file as stored on disk; PatchedHive is the
	// file that replaces it (nil without an editor).
	OriginalHive, PatchedHive []byte
	Writes                    []disk.Write
	// Geometry is the XP/2000 boot-sector geometry check (nil when not
	// made); its Writes are part of Writes.
	Geometry *GeometryFix
	Extents  []Extent
	Notes    []string
}

// PlanPatch computes the boot fix for one install and target: the registry
// changes and, given an editor and a rewriter, the patched hive and the
// disk writes that would store it, with the prediction before and after.
// A plan with no change writes nothing, whatever state the hive is in (a
// dirty hive is left for Windows to replay its own logs), so the dirty-hive
// refusal applies only to plans that write; CheckSafety's other refusals
// always apply. PlanPatch does not refuse a plan after which Windows still
// would not boot: Plan.CheckBoots says so, for the caller to refuse unless
// forced.
func PlanPatch(in *Install, target bootfix.Target, opts PlanOptions) (*Plan, error) {
	lenient := opts.Overrides
	lenient.AllowDirtyHive = true
	if err := CheckSafety(in, opts.Volume, lenient); err != nil {
		return nil, err
	}
	h, err := registry.Open(in.Hive)
	if err != nil {
		return nil, fmt.Errorf("windows: SYSTEM hive: %w", err)
	}
	facts := in.Facts()
	cs, err := bootfix.ComputeChanges(bootfix.FromRegistry(h), facts, target, opts.Extras)
	if err != nil {
		return nil, err
	}
	p := &Plan{Install: in, Target: target, Profile: cs.Profile, ControlSets: cs.ControlSets, Booting: cs.Booting,
		Changes: cs.Changes, MissingFiles: cs.MissingFiles, Extras: opts.Extras, OriginalHive: in.OnDisk}
	if p.Before, err = bootfix.Predict(bootfix.FromRegistry(h), facts, target); err != nil {
		return nil, err
	}
	if err := p.planGeometry(opts); err != nil {
		return nil, err
	}
	if len(p.Changes) == 0 {
		if len(p.Writes) > 0 {
			p.Extents = extents(p.Writes)
			p.After = p.Before
			return p, nil
		}
		p.Notes = append(p.Notes, "the registry needs no change: Windows already boots on "+string(target)+" as it is")
		if in.HiveState != HiveClean {
			p.Notes = append(p.Notes, "the SYSTEM hive is "+string(in.HiveState)+" and is left as stored: Windows replays its own logs at boot")
		}
		p.After = p.Before
		return p, nil
	}
	if err := CheckSafety(in, opts.Volume, opts.Overrides); err != nil {
		return nil, err
	}
	if in.HiveState == HiveRecovered {
		p.Notes = append(p.Notes, "the SYSTEM hive was dirty and is patched in its state recovered from "+
			"its logs; the patched file is clean with equal sequence numbers, so Windows will not replay the logs over it")
	}
	if opts.Edit == nil {
		opts.Edit = RegistryEditor
	}
	base := in.Hive
	if in.HiveState == HiveUnrecoverable {
		// Only reached with --allow-dirty-hive: the primary as stored is
		// taken as the truth and marked clean, so Windows will not replay
		// the (unusable) logs over the patch either.
		if base, err = markClean(in.Hive); err != nil {
			return nil, err
		}
		p.Notes = append(p.Notes, "the dirty SYSTEM hive is patched as stored, without its logs, and saved clean: "+
			"whatever the logs held is lost")
	}
	if p.PatchedHive, err = opts.Edit(base, p.Changes); err != nil {
		return nil, fmt.Errorf("windows: editing the SYSTEM hive: %w", err)
	}
	ph, err := registry.Open(p.PatchedHive)
	if err != nil {
		return nil, fmt.Errorf("windows: patched SYSTEM hive does not parse: %w", err)
	}
	if err := ph.Check(); err != nil {
		return nil, fmt.Errorf("windows: patched SYSTEM hive is inconsistent: %w", err)
	}
	if p.After, err = bootfix.Predict(bootfix.FromRegistry(ph), facts, target); err != nil {
		return nil, err
	}
	if opts.Rewrite == nil {
		// CheckSafety has already refused what the overrides do not allow.
		ov := opts.Overrides
		opts.Rewrite = ntfsRewriter(in.fsys, ov.AllowHibernated || ov.AllowUnclean || ov.AllowDirtyHive)
	}
	if opts.Rewrite == nil {
		p.Notes = append(p.Notes, "no file-system planner available: the plan has no disk writes")
		return p, nil
	}
	ws, err := opts.Rewrite(in.SystemHivePath(), p.PatchedHive)
	if err != nil {
		return nil, fmt.Errorf("windows: planning the rewrite of %s: %w", in.SystemHivePath(), err)
	}
	for _, w := range ws {
		w.Offset += opts.PartitionStart
		p.Writes = append(p.Writes, w)
	}
	if p.Geometry != nil {
		p.Writes = append(p.Writes, p.Geometry.Writes...)
	}
	p.Extents = extents(p.Writes)
	return p, nil
}

// planGeometry checks an NT 5.x install's NTFS boot sector against the
// geometry SeaBIOS reports on QEMU's pc machine and plans the fix of the
// fields that differ (kept in p.Geometry; added to p.Writes when the
// registry plan is empty, else after the hive's writes).
func (p *Plan) planGeometry(opts PlanOptions) error {
	if opts.Disk == nil || p.Install.Version.Family() != bootfix.FamilyNT5 || p.Target != bootfix.TargetIDE {
		return nil
	}
	g, err := PlanGeometryFix(opts.Disk, opts.PartitionStart)
	if err != nil {
		return err
	}
	if len(g.Writes) == 0 {
		return nil
	}
	what := fmt.Sprintf("the NTFS boot sector says %d heads, %d sectors per track; SeaBIOS reports %s for this disk on QEMU's pc machine",
		g.OldHeads, g.OldSectors, g.Firmware)
	if opts.NoGeometryFix {
		p.Notes = append(p.Notes, what+": left as is on request; Windows' boot code may stop with \"A disk read error occurred\"")
		return nil
	}
	p.Geometry = g
	p.Notes = append(p.Notes, what+": the boot sector's fields are set to the firmware's")
	if len(p.Changes) == 0 {
		p.Writes = append(p.Writes, g.Writes...)
	}
	return nil
}

// markClean returns a copy of a hive file whose base block says its last
// write completed (secondary sequence = primary).
func markClean(hive []byte) ([]byte, error) {
	bb, err := registry.ParseBaseBlock(hive)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), hive...)
	bb.SecondarySequence = bb.PrimarySequence
	bb.Encode(out)
	return out, nil
}

// extents merges the writes into sorted, non-overlapping ranges; touching
// ranges of the same kind are joined.
func extents(ws []disk.Write) []Extent {
	var out []Extent
	for _, w := range ws {
		if len(w.Data) > 0 {
			out = append(out, Extent{Offset: w.Offset, Length: int64(len(w.Data)), What: w.What})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	var merged []Extent
	for _, e := range out {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if e.Offset <= last.Offset+last.Length && (e.What == last.What || e.Offset < last.Offset+last.Length) {
				if end := e.Offset + e.Length; end > last.Offset+last.Length {
					last.Length = end - last.Offset
				}
				continue
			}
		}
		merged = append(merged, e)
	}
	return merged
}
