package main

import (
	"io"

	"github.com/spf13/pflag"

	"github.com/kvmify/kvmify/pipeline"
)

// patchFlags are the flags serve, mount and export share to choose the boot
// fix, the overlay and the report; package pipeline does the work.
type patchFlags struct {
	Patch     pipeline.PatchOptions
	Report    string
	Hash      bool
	Overlay   string
	Ephemeral bool
	Force     bool
	FullHash  bool
}

func (p *patchFlags) register(f *pflag.FlagSet) {
	f.StringVar(&p.Patch.Target, "target", "", "QEMU disk controller to patch for: ide, ahci or nvme (default by Windows version)")
	f.BoolVar(&p.Patch.NoPatch, "no-patch", false, "serve the plain copy-on-write view, without the boot fix")
	f.IntVar(&p.Patch.Partition, "partition", 0, pipeline.PartitionHelp)
	f.StringVar(&p.Patch.Extras, "extras", "", "comma-separated opt-in extras: autoreboot,cpu-power,filters")
	f.BoolVar(&p.Patch.Overrides.AllowHibernated, "allow-hibernated", false, "patch a hibernated or Fast Startup system")
	f.BoolVar(&p.Patch.Overrides.AllowUnclean, "allow-unclean", false, "patch a volume with an unclean $LogFile or dirty flag")
	f.BoolVar(&p.Patch.Overrides.AllowDirtyHive, "allow-dirty-hive", false, "patch a dirty hive its logs cannot recover")
	f.StringVar(&p.Report, "report", "", "write a forensic JSON report (rewritten at exit with the final overlay extents)")
	f.BoolVar(&p.Hash, "hash", false, "with --report: include the source image's sha256 (reads the whole image)")
	f.StringVar(&p.Overlay, "overlay", "", "overlay file (default: one per image under $XDG_STATE_HOME/kvmify/overlays)")
	f.BoolVar(&p.Ephemeral, "ephemeral", false, "keep the overlay in a temporary file removed at exit")
	f.BoolVar(&p.Force, "force", false, "replace existing output files (never a file kvmify reads)")
	f.BoolVar(&p.Patch.NoGeometryFix, "no-geometry-fix", false, "XP/2000: keep the NTFS boot sector's heads/sectors per track even where the firmware reports others")
	f.BoolVar(&p.Patch.ForceUnbootable, "force-unbootable", false, "apply the fix even when Windows is predicted to stop with 0x7B after it")
	f.BoolVar(&p.FullHash, "full-hash", false, "bind a new overlay to the sha256 of the whole source (reads it all once; checked at every open)")
}

// request turns the flags into the pipeline's request.
func (p *patchFlags) request(image string, stderr io.Writer) pipeline.Request {
	return pipeline.Request{
		Image: image, Patch: p.Patch, Overlay: p.Overlay, Ephemeral: p.Ephemeral,
		Report: p.Report, Hash: p.Hash, Force: p.Force, FullHash: p.FullHash,
		Tool: "kvmify " + toolVersion(), Stderr: stderr,
	}
}

// overlayHelp is the part of serve's, mount's and export's help that says
// where overlays live and what is refused.
const overlayHelp = `
The overlay is --overlay PATH, by default one file per image under
$XDG_STATE_HOME/kvmify/overlays (~/.local/state/kvmify/overlays when unset),
named after the image and a hash of its absolute path and device/inode, so
the same image finds the same overlay from any directory and nothing is
written beside the image. Its absolute path is printed. --ephemeral keeps it
in a temporary file removed at exit.

A new overlay first receives the boot fix for the Windows install on IMAGE,
built under a temporary name beside the overlay and renamed into place once
committed: a failure or kill leaves no half-patched overlay. An overlay that
already holds a fix is served as it is.

Refused before anything is created, saying what to do (exit 1; exit 2 for
an output that is an input, a contradiction between arguments): an empty
image; a BitLocker volume; a Windows volume that cannot be read (unless
--no-patch); --no-patch or --target disagreeing with the fix an existing
overlay holds; an overlay written with --no-patch, when asked to patch it;
any output (--report, OUT, the overlay) that is a file kvmify reads (by
device and inode, so symlinks and hard links too; --force never overrides
this); an existing output file without --force.`
