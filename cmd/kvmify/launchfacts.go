package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/overlay"
	"github.com/kvmify/kvmify/patch"
	"github.com/kvmify/kvmify/pipeline"
	"github.com/kvmify/kvmify/registry"
)

// vmFacts are what a launch profile is derived from, with where each came
// from, for the messages.
type vmFacts struct {
	launch.Facts
	Boot    launch.BootMode
	Windows string // "Windows 7 (6.1.7601)"; "" when none was found
}

// launchFacts reads what the VM needs from d, the disk as it will be served:
// the firmware from its partition table, and the Windows version and clock
// of the install patched (or to be patched). The controller is the one the
// overlay's recorded fix was made for, else --target, else the install's
// default; a disk without Windows goes on AHCI.
func launchFacts(d disk.Reader, rec *patch.Record, po pipeline.PatchOptions) (vmFacts, error) {
	var f vmFacts
	boot, err := bootMode(d)
	if err != nil {
		return f, err
	}
	f.Boot = boot
	f.Firmware = f.Boot.Firmware

	target := po.Target
	if rec != nil {
		target = rec.Target
	}
	vols, err := pipeline.FindVolumes(d)
	if err != nil {
		return f, err
	}
	if vol, err := pipeline.ChooseVolume(vols, po.Partition); err == nil && len(vol.Installs) > 0 {
		in := vol.Installs[0]
		f.WindowsMajor, f.WindowsMinor = int(in.Version.Major), int(in.Version.Minor)
		f.Windows = "Windows " + in.Version.String()
		if in.Version.ProductName != "" {
			f.Windows = in.Version.ProductName + " (" + in.Version.String() + ")"
		}
		if target == "" {
			target = string(in.DefaultTarget())
		}
		if h, err := registry.Open(in.Hive); err == nil {
			f.RTCIsUTC, _ = bootfix.RTCIsUTC(bootfix.FromRegistry(h))
		}
	}
	if target == "" {
		target = string(launch.AHCI)
	}
	c, err := launch.ParseController(target)
	if err != nil {
		return f, fmt.Errorf("no QEMU machine boots the %s target: %w", target, err)
	}
	f.Controller = c
	return f, nil
}

// recordedPatch reads the fix an existing overlay file holds without opening
// it for writing (nil when the file or the record is absent).
func recordedPatch(path string) (*patch.Record, error) {
	if path == "" {
		return nil, nil
	}
	info, err := overlay.ReadInfo(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	b, ok := info.Meta[patch.MetaKey]
	if !ok {
		return nil, nil
	}
	var rec patch.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("overlay %s: patch record: %w", path, err)
	}
	return &rec, nil
}

// printProfile says what VM will run and why, in a few lines.
func printProfile(w io.Writer, f vmFacts, p launch.Profile) {
	win := f.Windows
	if win == "" {
		win = "no Windows install found"
	}
	fmt.Fprintf(w, "kvmify: VM: %s, %s firmware (%s), disk on %s, %s, %d MiB, %d CPU(s)\n",
		win, p.Firmware, f.Boot.Reason, p.Controller, p.Accel, p.MemoryMiB, p.CPUs)
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// qemuLine is the QEMU command line 'kvmify boot --dry-run' prints for the
// disk d serves (as served: its recorded fix decides the controller), with
// its disk at where. ovPath is the overlay's path, beside which the UEFI
// variable store lives ("" for none).
func qemuLine(d disk.Reader, rec *patch.Record, po pipeline.PatchOptions, lo launch.Options, where launch.Disk, ovPath string, extra []string) (string, vmFacts, launch.Profile, error) {
	facts, err := launchFacts(d, rec, po)
	if err != nil {
		return "", facts, launch.Profile{}, err
	}
	kvmOK, kvmWhy := launch.KVMUsable()
	prof, err := launch.NewProfile(facts.Facts, lo, kvmOK, kvmWhy)
	if err != nil {
		return "", facts, prof, usageError{err}
	}
	var uefi launch.UEFIFiles
	if prof.Firmware == launch.UEFI {
		if uefi, err = launch.PrepareVars(varsFor(ovPath), true); err != nil {
			return "", facts, prof, err
		}
	}
	argv, err := launch.QEMUArgs(prof, where, uefi, extra)
	if err != nil {
		return "", facts, prof, err
	}
	return launch.ShellQuote(append([]string{launch.QEMUBinary}, argv...)), facts, prof, nil
}

// varsFor is where the UEFI variable store of the VM whose overlay is at
// ovPath lives; without an overlay file, a name in the current directory.
func varsFor(ovPath string) string {
	if ovPath == "" {
		return "OVMF_VARS.fd"
	}
	return launch.VarsPath(ovPath)
}
