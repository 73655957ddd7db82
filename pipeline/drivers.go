package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/ntfs"
	"github.com/kvmify/kvmify/patch"
	"github.com/kvmify/kvmify/windows"
	"github.com/kvmify/kvmify/xpdrivers"
)

// driversDir is where MergeIDE's drivers live, under the Windows directory.
const driversDir = `System32\drivers`

// DriverSupply is the half of MergeIDE (KB314082) that is not registry:
// the IDE driver files an XP or Server 2003 install lacks, taken from its
// own driver cabinets and created in System32\drivers in the same overlay
// commit as the registry fix.
type DriverSupply struct {
	// Missing are the IDE drivers System32\drivers lacked.
	Missing []string
	// Created are the files the plan creates, in creation order.
	Created []SuppliedFile
	// NotFound are missing drivers no cabinet holds; the fix alone will
	// not boot without them.
	NotFound []string
	// Cabinets are the cabinets searched, highest service pack first.
	Cabinets []string
	// Time is the plan's clock, recorded in each file's timestamps.
	Time  time.Time
	Notes []string
	// Writes create the files (absolute disk offsets); Planned.Writes
	// holds them before the registry fix's.
	Writes []disk.Write
}

// SuppliedFile is one driver file a plan creates.
type SuppliedFile struct {
	Path        string // from the volume root, e.g. Windows\System32\drivers\intelide.sys
	Size        int64
	SHA256      string
	Cabinet     string // volume path of the cabinet it came from
	Member      string // its name in the cabinet
	ServicePack int    // the cabinet's: N for spN.cab, 0 for driver.cab
	Version     string // the version resource's file version; "" when none
	Record      uint64 // MFT record number
	Runs        []ntfs.Run
	ClusterSize int64
}

// Clusters is the number of clusters the file's data occupies.
func (f SuppliedFile) Clusters() int64 {
	var n int64
	for _, r := range f.Runs {
		n += r.Length
	}
	return n
}

// PlanSource plans the run for a source disk: the boot fix of
// PlanVolumes and, for an XP/2003 install patched for ide, the creation of
// the IDE drivers it lacks (planDrivers).
func PlanSource(src disk.Reader, opts PatchOptions) (*Planned, error) {
	vols, err := FindVolumes(src)
	if err != nil {
		return nil, err
	}
	return planWithDrivers(src, vols, opts)
}

// planWithDrivers is PlanVolumes over vols (found on src) plus the driver
// files: when files are to be created, the registry fix is planned again
// over src as it reads after their creation (disk.WithWrites), so that the
// hive rewrite allocates no cluster the files took and the prediction sees
// the drivers present; both sets of writes go into one Planned.
func planWithDrivers(src disk.Reader, vols []windows.Volume, opts PatchOptions) (*Planned, error) {
	sup, err := planDrivers(src, vols, opts, timeNow())
	if err != nil {
		return nil, err
	}
	if sup == nil || len(sup.Writes) == 0 {
		p, err := PlanVolumes(src, vols, opts)
		if p != nil && sup != nil {
			p.Drivers = sup
			p.Plan.Notes = append(p.Plan.Notes, sup.Notes...)
		}
		return p, err
	}
	after, err := disk.WithWrites(src, sup.Writes)
	if err != nil {
		return nil, fmt.Errorf("composing the planned driver files: %w", err)
	}
	avols, err := FindVolumes(after)
	if err != nil {
		return nil, fmt.Errorf("reading the disk after the planned driver files: %w", err)
	}
	p, err := PlanVolumes(after, avols, opts)
	if err != nil {
		return nil, err
	}
	p.Drivers = sup
	p.Plan.Notes = append(p.Plan.Notes, sup.Notes...)
	p.Writes = append(append([]disk.Write(nil), sup.Writes...), p.Writes...)
	// "Before" is the source as found, without the files.
	if v, err := ChooseVolume(vols, opts.Partition); err == nil {
		if pr, ok := v.Installs[0].Prediction(p.Plan.Target); ok {
			p.Plan.Before = pr
		}
	}
	return p, nil
}

// planDrivers plans the creation of the IDE drivers the chosen install
// lacks; nil when there is nothing to consider (not NT5, not ide, not an
// NTFS install kvmify reads itself, or a state PlanVolumes refuses). Files
// already present are never replaced.
func planDrivers(src disk.Reader, vols []windows.Volume, opts PatchOptions, now time.Time) (*DriverSupply, error) {
	if opts.Check() != nil || opts.NoPatch {
		return nil, nil
	}
	vol, err := ChooseVolume(vols, opts.Partition)
	if err != nil || len(vol.Installs) == 0 {
		return nil, nil // PlanVolumes says why
	}
	in := vol.Installs[0]
	target := in.DefaultTarget()
	if opts.Target != "" {
		target, _ = bootfix.ParseTarget(opts.Target)
	}
	if in.Version.Family() != bootfix.FamilyNT5 || target != bootfix.TargetIDE {
		return nil, nil
	}
	// Creating files touches no hive, but every other refusal applies;
	// PlanVolumes then states it in its own words.
	lenient := opts.Overrides
	lenient.AllowDirtyHive = true
	if windows.CheckSafety(in, vol.State, lenient) != nil {
		return nil, nil
	}
	part := io.NewSectionReader(src, vol.Partition.Start, vol.Partition.Size)
	nv, err := ntfs.Open(part, vol.Partition.Size)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", vol.Partition.Index, err)
	}
	fsys := volumeFS{nv}
	dir := in.Dir + `\` + driversDir
	sup := &DriverSupply{Time: now}
	for _, name := range xpdrivers.IDEDrivers() {
		_, err := fsys.Open(dir + `\` + name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sup.Missing = append(sup.Missing, name)
		case err != nil:
			return nil, fmt.Errorf("partition %d: %s\\%s: %w", vol.Partition.Index, dir, name, err)
		}
	}
	if len(sup.Missing) == 0 {
		return sup, nil
	}
	res, err := xpdrivers.Find(fsys, in.Dir, sup.Missing)
	if err != nil {
		return nil, fmt.Errorf("partition %d: finding the missing IDE drivers in %s\\%s: %w", vol.Partition.Index, in.Dir, xpdrivers.CacheDir, err)
	}
	sup.NotFound = res.Missing
	sup.Notes = append(sup.Notes, res.Notes...)
	for _, c := range res.Cabinets {
		sup.Cabinets = append(sup.Cabinets, c.Path)
	}
	if len(sup.NotFound) > 0 {
		sup.Notes = append(sup.Notes, fmt.Sprintf("no cabinet in %s\\%s holds %v: copy them into %s before imaging",
			in.Dir, xpdrivers.CacheDir, sup.NotFound, dir))
	}
	if len(res.Drivers) == 0 {
		return sup, nil
	}
	files := make([]ntfs.NewFile, len(res.Drivers))
	for i, d := range res.Drivers {
		files[i] = ntfs.NewFile{Dir: dir, Name: d.Name, Content: d.Data}
	}
	ov := opts.Overrides
	ws, created, err := nv.PlanCreate(files, ntfs.CreateOptions{
		Now: now, AllowUnsafeVolume: ov.AllowHibernated || ov.AllowUnclean || ov.AllowDirtyHive,
	})
	if err != nil && !damaged(err) {
		// A layout kvmify cannot create files in (no System32\drivers,
		// a directory needing an attribute list, a full volume) leaves the
		// install as it was before this step: the plan names the files
		// still missing.
		sup.Notes = append(sup.Notes, fmt.Sprintf("the missing IDE drivers %s cannot be created on this volume (%v): copy them into %s in Windows before imaging",
			strings.Join(sup.Missing, ", "), err, dir))
		return sup, nil
	}
	if err != nil {
		return nil, fmt.Errorf("partition %d: planning the IDE driver files: %w", vol.Partition.Index, err)
	}
	for _, w := range ws {
		w.Offset += vol.Partition.Start
		sup.Writes = append(sup.Writes, w)
	}
	cs := nv.Boot().ClusterSize
	for i, d := range res.Drivers {
		f := SuppliedFile{
			Path: created[i].Path, Size: created[i].Size, SHA256: d.SHA256,
			Cabinet: d.Cabinet, Member: d.Member, ServicePack: d.ServicePack,
			Record: created[i].Record, Runs: created[i].Runs, ClusterSize: cs,
		}
		if d.VersionErr == nil {
			f.Version = d.Version.String()
		}
		sup.Created = append(sup.Created, f)
	}
	sup.Notes = append(sup.Notes, fmt.Sprintf("creates %d IDE driver file(s) the install lacks in %s, from its driver cabinets", len(sup.Created), dir))
	return sup, nil
}

// damaged reports whether err says the volume's metadata is damaged (as
// opposed to a layout PlanCreate does not handle).
func damaged(err error) bool {
	for _, e := range []error{ntfs.ErrBadFixup, ntfs.ErrBadRecord, ntfs.ErrBadAttribute, ntfs.ErrBadRunlist, ntfs.ErrBadIndex, ntfs.ErrTruncated} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// volumeFS reads an NTFS volume for xpdrivers, a missing file (or a
// directory) being fs.ErrNotExist.
type volumeFS struct{ v *ntfs.Volume }

func (n volumeFS) Open(path string) (disk.Reader, error) {
	s, err := n.v.OpenStream(path)
	if errors.Is(err, ntfs.ErrNotFound) || errors.Is(err, ntfs.ErrIsDirectory) || errors.Is(err, ntfs.ErrNotDirectory) {
		return nil, fmt.Errorf("%s: %w (%v)", path, fs.ErrNotExist, err)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// createdRecords lists the created files for the patch record.
func (s *DriverSupply) createdRecords() []patch.CreatedFile {
	if s == nil {
		return nil
	}
	var out []patch.CreatedFile
	for _, f := range s.Created {
		out = append(out, patch.CreatedFile{
			Path: f.Path, Size: f.Size, SHA256: f.SHA256, Cabinet: f.Cabinet, Member: f.Member,
			ServicePack: f.ServicePack, Version: f.Version, MFTRecord: f.Record, CreatedAt: s.Time,
		})
	}
	return out
}

// planSourceImage plans from the image at path when it is a disk image
// (not a directory), so that driver files can be planned on its NTFS
// volume; handled is false for a directory.
func planSourceImage(path string, opts PatchOptions) (p *Planned, handled bool, err error) {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() {
		return nil, false, nil
	}
	src, err := OpenSource(path)
	if err != nil {
		return nil, true, err
	}
	defer src.Close()
	vols, err := FindVolumes(src)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", path, err)
	}
	p, err = planWithDrivers(src, vols, opts)
	return p, true, err
}

// logCreated names each file the applied fix created.
func (s *Session) logCreated(p *Planned) {
	if p.Drivers == nil {
		return
	}
	for _, f := range p.Drivers.Created {
		s.logf("created %s (%d bytes, version %s, from %s member %s)", f.Path, f.Size, f.Version, f.Cabinet, f.Member)
	}
}
