package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/pipeline"
	"github.com/kvmify/kvmify/windows"
	"github.com/spf13/cobra"
)

// inspectOptions holds the flags of "inspect".
type inspectOptions struct {
	JSON bool
}

func newInspectCmd() *cobra.Command {
	var opts inspectOptions
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show the Windows installs on an image and whether each QEMU controller would boot",
		Long: `Show IMAGE's partitions and, for each Windows install found on an NTFS
partition, its version (and where that came from), architecture, control set,
SYSTEM hive state and volume state, and for each QEMU disk controller
(ide = i440fx PIIX3, ahci = q35 ICH9, nvme = QEMU NVMe, virtio = virtio-blk) whether Windows
will find a boot-start driver for it: "boots", or "0x7B" with the reason.

IMAGE is a disk image or block device (opened read-only; raw, split raw,
E01, VHD/VHDX, VMDK, qcow2 or an nbd:// / nbd+unix:// URI, told by
content), or a directory
holding a mounted Windows volume (e.g. an ntfs-3g mount), shown as
partition 0. Nothing is ever written.

The first lines name the container format and the logical disk's size, and
the firmware the disk needs: UEFI for a GPT disk with an EFI System
Partition, BIOS for an MBR disk with an active partition, with the reason.

With --json the output is one object: {"image", "format", "size",
"boot_mode": {"partition_table", "esp_partition", "firmware", "reason"},
"partitions": [{"index", "start",
"size", "ntfs", "volume_state" (null when not NTFS), "error", "windows": {"dir", "version",
"build", "arch", "product", "version_source", "control_set", "hive_state",
"default_target", "targets": {"ide": {"ok", "verdict", "reason", "path"},
"ahci": {...}, "nvme": {...}, "virtio": {...}}}}]}.

Exit status: 0 success (whatever the predictions say), 1 unreadable image,
2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// runInspect prints what openImage finds in args[0].
func runInspect(ctx context.Context, opts inspectOptions, args []string, stdout io.Writer) error {
	rep := inspectReport{Image: args[0], Format: "directory"}
	var vols []windows.Volume
	if fi, err := os.Stat(args[0]); err == nil && fi.IsDir() {
		var closeImage func() error
		if vols, closeImage, err = pipeline.OpenVolumes(args[0]); err != nil {
			return err
		}
		defer closeImage()
	} else {
		src, err := pipeline.OpenSource(args[0])
		if err != nil {
			return err
		}
		defer src.Close()
		rep.Format, rep.Size = src.Format(), src.Size()
		if vols, err = pipeline.FindVolumes(src); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		mode, err := bootMode(src)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		rep.Boot = &mode
	}
	rep.Partitions = make([]partitionJSON, 0, len(vols))
	for _, v := range vols {
		rep.Partitions = append(rep.Partitions, partitionReport(v))
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printInspect(stdout, rep)
}

// inspectReport is the JSON shape of "inspect".
type inspectReport struct {
	Image  string `json:"image"`
	Format string `json:"format"` // container: raw, split-raw, ewf, qcow2, ...; "directory"
	Size   int64  `json:"size"`   // the logical disk's size in bytes
	// Boot is the firmware the disk needs, from its partition table (absent
	// for a directory).
	Boot       *launch.BootMode `json:"boot_mode,omitempty"`
	Partitions []partitionJSON  `json:"partitions"`
}

type partitionJSON struct {
	Index       int              `json:"index"`
	Start       int64            `json:"start"`
	Size        int64            `json:"size"`
	NTFS        bool             `json:"ntfs"`
	FS          string           `json:"fs"`
	VolumeState *volumeStateJSON `json:"volume_state"` // null for a partition that is not NTFS
	Error       string           `json:"error,omitempty"`
	Windows     *installJSON     `json:"windows,omitempty"`
	Others      []*installJSON   `json:"other_installs,omitempty"`
}

type volumeStateJSON struct {
	Dirty          bool   `json:"dirty"`
	LogFileUnclean bool   `json:"logfile_unclean"`
	FastStartup    bool   `json:"fast_startup"`
	Hibernated     bool   `json:"hibernated"`
	Hiberfil       string `json:"hiberfil_signature,omitempty"`
	BitLocker      bool   `json:"bitlocker"`
}

func volumeStateReport(vs windows.VolumeState) *volumeStateJSON {
	return &volumeStateJSON{Dirty: vs.Dirty, LogFileUnclean: vs.LogFileUnclean, FastStartup: vs.FastStartup,
		Hibernated: vs.Hibernated, Hiberfil: vs.Hiberfil, BitLocker: vs.BitLocker}
}

type installJSON struct {
	Dir             string                    `json:"dir"`
	Version         string                    `json:"version"`
	Build           *uint32                   `json:"build"` // null when unknown
	Family          string                    `json:"family"`
	Product         string                    `json:"product,omitempty"`
	ServicePack     string                    `json:"service_pack,omitempty"`
	Server          bool                      `json:"server"`
	Arch            string                    `json:"arch"`
	VersionSource   string                    `json:"version_source"`
	VersionEvidence string                    `json:"version_evidence,omitempty"`
	ControlSet      string                    `json:"control_set"`
	HiveState       windows.HiveState         `json:"hive_state"`
	HiveDetail      string                    `json:"hive_detail,omitempty"`
	HiveLogs        []string                  `json:"hive_logs,omitempty"`
	DefaultTarget   bootfix.Target            `json:"default_target"`
	Targets         map[string]predictionJSON `json:"targets"`
}

type predictionJSON struct {
	OK      bool     `json:"ok"`
	Verdict string   `json:"verdict"`
	Reason  string   `json:"reason"`
	Path    []string `json:"path,omitempty"`
	// Broken is the link of the boot chain that fails (nil when it boots).
	Broken *bootfix.Link `json:"broken,omitempty"`
}

func partitionReport(v windows.Volume) partitionJSON {
	p := partitionJSON{Index: v.Partition.Index, Start: v.Partition.Start, Size: v.Partition.Size,
		NTFS: v.NTFS, FS: v.FS.String()}
	if v.NTFS || v.State != (windows.VolumeState{}) {
		p.VolumeState = volumeStateReport(v.State)
	}
	if v.Err != nil {
		p.Error = v.Err.Error()
	}
	for i, in := range v.Installs {
		j := installReport(in)
		if i == 0 {
			p.Windows = j
		} else {
			p.Others = append(p.Others, j)
		}
	}
	return p
}

func installReport(in *windows.Install) *installJSON {
	j := &installJSON{Dir: in.Dir, Version: in.Version.String(), Build: buildOrNil(in.Version.Build),
		Family: in.Version.Family().String(), Product: in.Version.ProductName,
		ServicePack: in.Version.ServicePack, Server: in.Version.Server, Arch: in.Arch,
		VersionSource: in.Version.Source, VersionEvidence: in.Version.Evidence,
		ControlSet: in.ControlSet, HiveState: in.HiveState, HiveDetail: in.HiveDetail,
		HiveLogs: in.Logs, DefaultTarget: in.DefaultTarget(), Targets: map[string]predictionJSON{}}
	for _, p := range in.Predictions {
		j.Targets[string(p.Target)] = predictionReport(p)
	}
	return j
}

// buildOrNil is a known build number, or nil (JSON null) for 0, which
// means unknown.
func buildOrNil(b uint32) *uint32 {
	if b == 0 {
		return nil
	}
	return &b
}

func predictionReport(p bootfix.Prediction) predictionJSON {
	return predictionJSON{OK: p.OK, Verdict: p.Verdict(), Reason: p.Reason, Path: p.Path, Broken: p.Broken}
}

func printInspect(w io.Writer, rep inspectReport) error {
	var b strings.Builder
	if rep.Format == "directory" {
		fmt.Fprintf(&b, "%s (a directory)\n", rep.Image)
	} else {
		fmt.Fprintf(&b, "%s: %s, %d bytes\n", rep.Image, rep.Format, rep.Size)
	}
	if m := rep.Boot; m != nil {
		fmt.Fprintf(&b, "boot: %s firmware (%s)\n", strings.ToUpper(string(m.Firmware)), m.Reason)
	}
	if len(rep.Partitions) == 0 {
		b.WriteString("  no partitions\n")
	}
	for _, p := range rep.Partitions {
		fs := "not NTFS"
		switch {
		case p.NTFS:
			fs = "NTFS"
		case p.FS != "" && p.FS != "unknown":
			fs = p.FS
		}
		fmt.Fprintf(&b, "partition %d: start %d, size %d, %s\n", p.Index, p.Start, p.Size, fs)
		if p.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", p.Error)
		}
		if vs := p.VolumeState; vs != nil && (vs.Hibernated || vs.FastStartup || vs.Dirty || vs.LogFileUnclean || vs.BitLocker) {
			fmt.Fprintf(&b, "  volume: hibernated=%v fast-startup=%v dirty=%v logfile-unclean=%v bitlocker=%v\n",
				vs.Hibernated, vs.FastStartup, vs.Dirty, vs.LogFileUnclean, vs.BitLocker)
		}
		for _, in := range append([]*installJSON{p.Windows}, p.Others...) {
			if in == nil {
				continue
			}
			name := in.Product
			if name == "" {
				name = in.Family
			}
			fmt.Fprintf(&b, "  %s: Windows %s (%s), %s, version from %s", in.Dir, in.Version, name, in.Arch, in.VersionSource)
			if in.VersionEvidence != "" {
				fmt.Fprintf(&b, ": %s", in.VersionEvidence)
			}
			fmt.Fprintf(&b, "\n    control set %s, SYSTEM hive %s", in.ControlSet, in.HiveState)
			if in.HiveDetail != "" {
				fmt.Fprintf(&b, " (%s)", in.HiveDetail)
			}
			b.WriteString("\n")
			for _, t := range bootfix.Targets {
				pr := in.Targets[string(t)]
				def := ""
				if t == in.DefaultTarget {
					def = " [default]"
				}
				fmt.Fprintf(&b, "    %-6s %-5s %s%s\n", t, pr.Verdict, pr.Reason, def)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
