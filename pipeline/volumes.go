package pipeline

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fstype"
	"github.com/kvmify/kvmify/ntfs"
	"github.com/kvmify/kvmify/partition"
	"github.com/kvmify/kvmify/windows"
)

// PartitionHelp is the one meaning of --partition in every command.
const PartitionHelp = "partition number as Linux numbers it (sdaN; 1 for a bare file system, 0 for a directory); default: chosen automatically"

// Errors that classify why no install was chosen.
var (
	// ErrNoWindows means the disk truly holds no Windows install: every
	// partition was read and none holds one.
	ErrNoWindows = errors.New("no Windows install found")
	// ErrUnreadable means a partition that may hold Windows could not be
	// read (damaged NTFS metadata, a damaged hive, a truncated image).
	ErrUnreadable = errors.New("a partition that may hold Windows cannot be read")
	// ErrBitLocker means a partition is BitLocker-encrypted.
	ErrBitLocker = ntfs.ErrBitLocker
)

// PatchOptions choose the boot fix.
type PatchOptions struct {
	Target    string // ide, ahci, ...; "" = the install's default
	NoPatch   bool
	Partition int // Linux numbering; 0 = automatic
	Extras    string
	Overrides windows.Overrides
	// NoGeometryFix leaves an XP/2000 NTFS boot sector's heads and sectors
	// per track as they are even when the firmware will report others.
	NoGeometryFix bool
	// ForceUnbootable applies a fix the prediction says still stops with
	// 0x7B (the run refuses otherwise).
	ForceUnbootable bool
}

// Check validates the options alone; its errors are usage errors.
func (p PatchOptions) Check() error {
	if p.NoPatch && (p.Target != "" || p.Extras != "") {
		return usagef("--no-patch excludes --target and --extras")
	}
	if p.Partition < 0 {
		return usagef("--partition must be 0 (automatic) or a partition number")
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

// FindVolumes lists the partitions of d and the Windows installs on them.
// A disk without a partition table or file system holds no volumes.
func FindVolumes(d disk.Reader) ([]windows.Volume, error) {
	vols, err := windows.Find(d, d.Size(), windows.OpenNTFS)
	if errors.Is(err, partition.ErrNoTable) {
		return nil, nil
	}
	return vols, err
}

// OpenVolumes finds the volumes of the image at path, or of a directory
// holding a mounted Windows volume (partition 0). The volumes read the
// image lazily, so it stays open until close is called.
func OpenVolumes(path string) (vols []windows.Volume, close func() error, err error) {
	noop := func() error { return nil }
	fi, err := os.Stat(path)
	if err != nil {
		return nil, noop, err
	}
	if fi.IsDir() {
		fsys := windows.DirFS(path)
		v := windows.Volume{NTFS: true, FS: fstype.NTFS}
		v.State.Hiberfil, v.State.Hibernated, v.Err = windows.Hiberfil(fsys)
		if v.Err == nil {
			v.Installs, v.Err = windows.Inspect(fsys)
		}
		return []windows.Volume{v}, noop, nil
	}
	src, err := OpenSource(path)
	if err != nil {
		return nil, noop, err
	}
	vols, err = FindVolumes(src)
	if err != nil {
		src.Close()
		return nil, noop, fmt.Errorf("%s: %w", path, err)
	}
	return vols, src.Close, nil
}

// ChooseVolume selects the partition to patch: the one named (index > 0),
// or the only one holding Windows. With no install anywhere it says why:
// ErrBitLocker or ErrUnreadable when a partition could not be read (the
// install may be there), ErrNoWindows only when every partition was read.
func ChooseVolume(vols []windows.Volume, index int) (windows.Volume, error) {
	var with []windows.Volume
	for _, v := range vols {
		if index > 0 && v.Partition.Index == index {
			switch {
			case v.State.BitLocker:
				return v, bitLockerError(v)
			case v.Err != nil:
				return v, fmt.Errorf("partition %d: %w: %w", index, ErrUnreadable, v.Err)
			case len(v.Installs) == 0:
				return v, fmt.Errorf("partition %d (%s) holds no Windows install: %w", index, v.FS, ErrNoWindows)
			}
			return v, nil
		}
		if len(v.Installs) > 0 {
			with = append(with, v)
		}
	}
	if index > 0 {
		return windows.Volume{}, usagef("--partition %d: no such partition (%s)", index, partitionList(vols))
	}
	switch len(with) {
	case 1:
		return with[0], nil
	case 0:
		for _, v := range vols {
			if v.State.BitLocker {
				return v, bitLockerError(v)
			}
		}
		var errs []string
		for _, v := range vols {
			if v.Err != nil {
				errs = append(errs, fmt.Sprintf("partition %d: %v", v.Partition.Index, v.Err))
			}
		}
		if len(errs) > 0 {
			return windows.Volume{}, fmt.Errorf("%w (%s); kvmify will not guess whether Windows is there: repair the image or choose another partition, or pass --no-patch to serve it without a boot fix",
				ErrUnreadable, strings.Join(errs, "; "))
		}
		return windows.Volume{}, fmt.Errorf("%w (%s)", ErrNoWindows, partitionList(vols))
	}
	var idx []string
	for _, v := range with {
		idx = append(idx, fmt.Sprint(v.Partition.Index))
	}
	return windows.Volume{}, usagef("Windows is on partitions %s; choose one with --partition", strings.Join(idx, ", "))
}

func bitLockerError(v windows.Volume) error {
	return fmt.Errorf("partition %d: %w: kvmify cannot read or patch it; decrypt it in Windows first (manage-bde -off), or pass --no-patch to serve it as it is without a boot fix",
		v.Partition.Index, ErrBitLocker)
}

func partitionList(vols []windows.Volume) string {
	if len(vols) == 0 {
		return "no partition table or file system"
	}
	var s []string
	for _, v := range vols {
		s = append(s, fmt.Sprintf("%d: %s", v.Partition.Index, v.FS))
	}
	return "partitions " + strings.Join(s, ", ")
}

// Planned is everything a run will write, computed before anything is:
// today the boot fix's writes; later also created files and boot-sector
// fixes. An Accept hook sees it (and the prediction after the fix) and may
// refuse before anything is applied.
type Planned struct {
	Volume windows.Volume
	Plan   *windows.Plan
	// Writes are every byte range the run puts into the overlay, in order.
	Writes []disk.Write
	// Drivers are the XP IDE driver files the run creates (nil: none
	// considered); their writes come first in Writes. (drivers.go)
	Drivers *DriverSupply
}

// PlanVolumes computes the boot fix for the chosen install among vols,
// found on src (read for the XP/2000 boot-sector geometry; nil skips it).
func PlanVolumes(src disk.Reader, vols []windows.Volume, opts PatchOptions) (*Planned, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	vol, err := ChooseVolume(vols, opts.Partition)
	if err != nil {
		return nil, err
	}
	var target bootfix.Target
	if opts.Target != "" {
		target, _ = bootfix.ParseTarget(opts.Target)
	}
	extras, _ := bootfix.ParseExtras(opts.Extras)
	in := vol.Installs[0]
	if target == "" {
		target = in.DefaultTarget()
	}
	p, err := windows.PlanPatch(in, target, windows.PlanOptions{
		Extras: extras, Overrides: opts.Overrides, Volume: vol.State, PartitionStart: vol.Partition.Start,
		Disk: src, NoGeometryFix: opts.NoGeometryFix,
	})
	if err != nil {
		return nil, err
	}
	return &Planned{Volume: vol, Plan: p, Writes: append([]disk.Write(nil), p.Writes...)}, nil
}

// PlanImage plans the boot fix for the image (or mounted volume directory)
// at path, touching nothing: the plan command's whole job, and the same
// code serve runs.
func PlanImage(path string, opts PatchOptions) (*Planned, error) {
	if p, handled, err := planSourceImage(path, opts); handled { // with driver files (drivers.go)
		return p, err
	}
	vols, closeImage, err := OpenVolumes(path)
	if err != nil {
		return nil, err
	}
	defer closeImage()
	return PlanVolumes(nil, vols, opts) // a mounted directory: no disk
}

// OpenNTFS opens the NTFS volume on partition index of the image at path
// (0: the only or first NTFS one), for ls and cat. The partition is judged
// by package fstype as everywhere else, so a BitLocker volume is named as
// such. close releases the image.
func OpenNTFS(path string, index int) (v *ntfs.Volume, close func() error, err error) {
	if index < 0 {
		return nil, nil, usagef("--partition must be 0 (automatic) or a partition number")
	}
	src, err := OpenSource(path)
	if err != nil {
		return nil, nil, err
	}
	v, err = ntfsOn(src, index)
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, src.Close, nil
}

func ntfsOn(r disk.Reader, index int) (*ntfs.Volume, error) {
	tab, err := partition.Read(r, r.Size())
	if err != nil {
		return nil, err
	}
	var chosen *partition.Partition
	var bitlocker []int
	for i := range tab.Partitions {
		p := &tab.Partitions[i]
		if index > 0 {
			if p.Index == index {
				chosen = p
				break
			}
			continue
		}
		kind, err := fstype.Detect(r, p.Start)
		if err != nil {
			continue
		}
		if kind == fstype.NTFS {
			chosen = p
			break
		}
		if kind == fstype.BitLocker {
			bitlocker = append(bitlocker, p.Index)
		}
	}
	switch {
	case chosen == nil && index > 0:
		return nil, usagef("--partition %d: no such partition (the %s table has %d)", index, tab.Scheme, len(tab.Partitions))
	case chosen == nil && len(bitlocker) > 0:
		return nil, fmt.Errorf("no readable NTFS partition: partition %d: %w; decrypt it in Windows first (manage-bde -off)", bitlocker[0], ErrBitLocker)
	case chosen == nil:
		return nil, fmt.Errorf("no NTFS partition found (%s table, %d partitions)", tab.Scheme, len(tab.Partitions))
	}
	kind, err := fstype.Detect(r, chosen.Start)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", chosen.Index, err)
	}
	if kind == fstype.BitLocker {
		return nil, fmt.Errorf("partition %d: %w; decrypt it in Windows first (manage-bde -off)", chosen.Index, ErrBitLocker)
	}
	v, err := ntfs.Open(io.NewSectionReader(r, chosen.Start, chosen.Size), chosen.Size)
	if err != nil {
		return nil, fmt.Errorf("partition %d (%s): %w", chosen.Index, kind, err)
	}
	return v, nil
}
