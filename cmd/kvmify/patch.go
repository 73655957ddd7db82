package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/overlay"
	parttable "github.com/kvmify/kvmify/partition"
	"github.com/kvmify/kvmify/patch"
	"github.com/kvmify/kvmify/windows"
)

// patchFlags are the flags serve, mount and export share to choose the boot
// fix and its report.
type patchFlags struct {
	Target    string
	NoPatch   bool
	Partition int
	Extras    string
	Overrides windows.Overrides
	Report    string
	Hash      bool
	Overlay   string
	Ephemeral bool
}

func (p *patchFlags) register(f *pflag.FlagSet) {
	p.Partition = -1
	f.StringVar(&p.Target, "target", "", "QEMU disk controller to patch for: ide, ahci or nvme (default by Windows version)")
	f.BoolVar(&p.NoPatch, "no-patch", false, "serve the plain copy-on-write view, without the boot fix")
	f.IntVar(&p.Partition, "partition", -1, "partition index holding Windows (default: the only one)")
	f.StringVar(&p.Extras, "extras", "", "comma-separated opt-in extras: autoreboot,cpu-power,filters")
	f.BoolVar(&p.Overrides.AllowHibernated, "allow-hibernated", false, "patch a hibernated or Fast Startup system")
	f.BoolVar(&p.Overrides.AllowUnclean, "allow-unclean", false, "patch a volume with an unclean $LogFile or dirty flag")
	f.BoolVar(&p.Overrides.AllowDirtyHive, "allow-dirty-hive", false, "patch a dirty hive its logs cannot recover")
	f.StringVar(&p.Report, "report", "", "write a forensic JSON report of what was changed to this file")
	f.BoolVar(&p.Hash, "hash", false, "with --report: include the source image's sha256 (reads the whole image)")
	f.StringVar(&p.Overlay, "overlay", "", "overlay file (default: <image name>.kvmify-overlay in the current directory)")
	f.BoolVar(&p.Ephemeral, "ephemeral", false, "keep the overlay in a temporary file removed at exit")
}

func (p *patchFlags) check() error {
	if p.NoPatch && (p.Target != "" || p.Extras != "") {
		return usagef("--no-patch excludes --target and --extras")
	}
	if p.Ephemeral && p.Overlay != "" {
		return usagef("--ephemeral excludes --overlay")
	}
	if p.Hash && p.Report == "" {
		return usagef("--hash goes with --report")
	}
	if p.Target != "" {
		if _, err := bootfix.ParseTarget(p.Target); err != nil {
			return usagef("--target: %v", err)
		}
	}
	if _, err := bootfix.ParseExtras(p.Extras); err != nil {
		return usagef("--extras: %v", err)
	}
	return nil
}

// patchedView is a source, its overlay and the patch recorded in it.
type patchedView struct {
	src    *disk.Source
	ov     *overlay.Overlay
	record *patch.Record // nil: no patch in the overlay
	fresh  bool          // the patch was applied just now
}

func (v *patchedView) Close() error {
	err := v.ov.Close()
	if cerr := v.src.Close(); err == nil {
		err = cerr
	}
	return err
}

// openPatchedView opens image read-only and its overlay, and puts the boot
// fix into the overlay unless it already holds one (a restart serves the
// overlay as it is) or --no-patch is given. An image without Windows is
// served plainly unless a target was asked for.
func openPatchedView(ctx context.Context, image string, pf patchFlags, stderr io.Writer) (*patchedView, error) {
	src, err := disk.OpenSource(image)
	if err != nil {
		return nil, err
	}
	ovPath := pf.Overlay
	if ovPath == "" && !pf.Ephemeral {
		ovPath = overlay.DefaultPath(image)
	}
	ov, err := overlay.Open(ovPath, src, overlay.Options{Ephemeral: pf.Ephemeral, SourcePath: image})
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("overlay: %w", err)
	}
	v := &patchedView{src: src, ov: ov}
	fail := func(err error) (*patchedView, error) {
		v.Close()
		return nil, err
	}
	rec, ok, err := patch.Applied(ov)
	if err != nil {
		return fail(err)
	}
	if ok {
		v.record = rec
		fmt.Fprintf(stderr, "kvmify: overlay %s already holds the %s boot fix applied %s; serving it as it is\n",
			ov.Path(), rec.Target, rec.AppliedAt.Format(time.RFC3339))
		return v, nil
	}
	if pf.NoPatch {
		return v, nil
	}
	plan, vol, err := planImage(image, pf)
	if errors.Is(err, errNoWindows) && pf.Target == "" {
		fmt.Fprintf(stderr, "kvmify: no Windows install found on %s; serving it without a boot fix\n", image)
		return v, nil
	}
	if err != nil {
		return fail(err)
	}
	if len(plan.Writes) == 0 {
		fmt.Fprintf(stderr, "kvmify: %s already boots on %s; nothing to patch\n", image, plan.Target)
	}
	rec = recordFor(image, src.Size(), vol, plan)
	writes := make([]disk.Write, len(plan.Writes))
	for i, w := range plan.Writes {
		writes[i] = disk.Write{Offset: w.Offset, Data: w.Data, What: w.What}
	}
	if err := patch.Describe(rec, src, writes); err != nil {
		return fail(err)
	}
	if err := patch.Apply(ov, writes, rec); err != nil {
		if errors.Is(err, patch.ErrNotFresh) {
			return fail(fmt.Errorf("overlay %s: %w; use a new overlay (--overlay or --ephemeral) or --no-patch", ov.Path(), err))
		}
		return fail(err)
	}
	v.record, v.fresh = rec, true
	fmt.Fprintf(stderr, "kvmify: applied the %s boot fix (%s): %d registry changes, %d disk extents, into overlay %s\n",
		plan.Target, plan.Profile, len(rec.RegistryChanges), len(rec.Extents), ov.Path())
	return v, nil
}

var errNoWindows = errors.New("no Windows install found")

// planImage computes the boot-fix plan for the chosen install of image; the
// plan holds everything it needs in memory, so the image is closed again.
func planImage(image string, pf patchFlags) (*windows.Plan, windows.Volume, error) {
	var target bootfix.Target
	if pf.Target != "" {
		t, err := bootfix.ParseTarget(pf.Target)
		if err != nil {
			return nil, windows.Volume{}, usagef("--target: %v", err)
		}
		target = t
	}
	extras, err := bootfix.ParseExtras(pf.Extras)
	if err != nil {
		return nil, windows.Volume{}, usagef("--extras: %v", err)
	}
	vols, closeImage, err := openImage(image)
	if errors.Is(err, parttable.ErrNoTable) {
		// A blank or non-PC disk holds no Windows to fix.
		return nil, windows.Volume{}, fmt.Errorf("%w: %v", errNoWindows, err)
	}
	if err != nil {
		return nil, windows.Volume{}, err
	}
	defer closeImage()
	vol, err := pickVolume(vols, pf.Partition)
	if err != nil {
		if pf.Partition < 0 && !hasInstall(vols) {
			return nil, vol, fmt.Errorf("%w: %v", errNoWindows, err)
		}
		return nil, vol, err
	}
	in := vol.Installs[0]
	if target == "" {
		target = in.DefaultTarget()
	}
	p, err := windows.PlanPatch(in, target, windows.PlanOptions{
		Extras: extras, Overrides: pf.Overrides, Volume: vol.State, PartitionStart: vol.Partition.Start,
	})
	if err != nil {
		return nil, vol, err
	}
	return p, vol, nil
}

func hasInstall(vols []windows.Volume) bool {
	for _, v := range vols {
		if len(v.Installs) > 0 {
			return true
		}
	}
	return false
}

// recordFor turns a plan into the record kept in the overlay and the
// report.
func recordFor(image string, size int64, vol windows.Volume, p *windows.Plan) *patch.Record {
	rep := planReport(image, vol, p)
	rec := &patch.Record{
		Tool: "kvmify " + toolVersion(), AppliedAt: time.Now().UTC(),
		Source: image, SourceSize: size, Partition: vol.Partition.Index,
		WindowsDir: rep.Dir, WindowsVersion: rep.Version, HiveState: string(rep.HiveState),
		Target: string(rep.Target), Profile: rep.Profile, Notes: rep.Notes,
		RegistryChanges: []patch.Change{},
	}
	for _, c := range rep.Changes {
		rec.RegistryChanges = append(rec.RegistryChanges, patch.Change{
			Key: c.Key, Value: c.Value, Op: string(c.Op), Type: c.Type, Old: c.Old, New: c.New})
	}
	return rec
}

// forensicReport is the JSON written by --report.
type forensicReport struct {
	Tool         string        `json:"tool"`
	Source       string        `json:"source"`
	SourceSize   int64         `json:"source_size"`
	SourceSHA256 string        `json:"source_sha256,omitempty"`
	Overlay      string        `json:"overlay"`
	Patch        *patch.Record `json:"patch"`
	// Changed lists every extent the overlay holds now (patch and guest
	// writes alike).
	Changed []overlay.Extent `json:"overlay_extents"`
}

// writeReport writes the forensic report for v to path.
func writeReport(ctx context.Context, path, image string, v *patchedView, hash bool) error {
	rep := forensicReport{Tool: "kvmify " + toolVersion(), Source: image, SourceSize: v.src.Size(),
		Overlay: v.ov.Path(), Patch: v.record, Changed: v.ov.Changes()}
	if hash {
		sum, err := hashReader(ctx, v.src)
		if err != nil {
			return fmt.Errorf("hashing source: %w", err)
		}
		rep.SourceSHA256 = sum
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
