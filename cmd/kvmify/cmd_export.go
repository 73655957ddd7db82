package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/outpath"
	"github.com/kvmify/kvmify/pipeline"
)

type exportOptions struct {
	patch   patchFlags
	Format  string
	Backing bool
}

func newExportCmd() *cobra.Command {
	var opts exportOptions
	cmd := &cobra.Command{
		Use:   "export IMAGE OUT",
		Short: "Write the patched disk to a new raw or qcow2 image",
		Long: `Write IMAGE as kvmify serves it — with the boot fix in its overlay — to the new
file OUT. The source is only read.

--format raw writes a sparse raw image; --format qcow2 a standalone qcow2
image (written directly, no qemu-img needed); --format qcow2 --backing a
small qcow2 image holding only the changed clusters, whose backing file is
IMAGE itself. A qcow2 export also gets OUT.properties.json, the VM it needs in
the form OpenStack image properties use (hw_machine_type pc or q35,
hw_disk_bus ide, sata or nvme, hw_firmware_type bios or uefi, os_type), so a
fleet can import the disk without guessing; the same facts 'kvmify boot'
launches with.

The overlay is --overlay PATH, else the image's default overlay when it
exists (export what serve has served), else a temporary one. A new overlay
gets the boot fix as with serve; --no-patch exports the plain copy-on-write
view, and is refused when the overlay holds a boot fix (an unmodified export
never comes out modified).

OUT is written under a temporary name beside it and renamed into place when
complete. It must not exist unless --force is given, and must never be a file
kvmify reads (the image, the overlay, the report).
` + overlayHelp + `

Exit status: 0 success, 1 failure or refusal, 2 usage error, 130/143 when
SIGINT/SIGTERM interrupts it (before mounting, for mount).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.Context(), opts, args, cmd.ErrOrStderr())
		},
	}
	opts.patch.register(cmd.Flags())
	cmd.Flags().StringVar(&opts.Format, "format", "raw", "output format: raw or qcow2")
	cmd.Flags().BoolVar(&opts.Backing, "backing", false, "qcow2 only: keep only the changes, with IMAGE as backing file")
	return cmd
}

func runExport(ctx context.Context, opts exportOptions, args []string, stderr io.Writer) (err error) {
	image, out := args[0], args[1]
	if opts.Format != "raw" && opts.Format != "qcow2" {
		return usagef("--format must be raw or qcow2, not %q", opts.Format)
	}
	if opts.Backing && opts.Format != "qcow2" {
		return usagef("--backing goes with --format qcow2")
	}
	req := opts.patch.request(image, stderr)
	req.ExistingOverlayOnly = true
	req.Outputs = []pipeline.Output{{Path: out, What: "the export OUT"}}
	sidecar := ""
	if opts.Format == "qcow2" {
		sidecar = out + ".properties.json"
		req.Outputs = append(req.Outputs, pipeline.Output{Path: sidecar, What: "the image properties OUT.properties.json"})
	}
	req.ReportOnSuccess = true
	sess, err := pipeline.Open(ctx, req)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := sess.Close(); err == nil {
			err = cerr
		}
	}()
	if f := sess.Source.Format(); opts.Backing && f != "raw" && f != "block-device" {
		// The qcow2 would name IMAGE as a raw backing file.
		return fmt.Errorf("--backing needs a raw source, and %s is %s; export without --backing", image, f)
	}
	tmp, err := reserveTemp(out)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op once published
	progress, done := progressTo(stderr, "exporting")
	defer done()
	d := sess.Disk()
	switch {
	case opts.Format == "raw":
		err = export.Raw(ctx, d, tmp, progress)
	case opts.Backing:
		var ext []export.Extent
		for _, e := range sess.Overlay.Changes() {
			ext = append(ext, export.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero})
		}
		abs, aerr := filepath.Abs(image)
		if aerr != nil {
			return aerr
		}
		err = export.QCOW2Backed(ctx, d, abs, ext, tmp, progress)
	default:
		err = export.QCOW2(ctx, d, tmp, progress)
	}
	if err != nil {
		return err
	}
	done()
	if err := outpath.Publish(tmp, out, opts.patch.Force); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "kvmify: wrote %s (%s)\n", out, opts.Format)
	if sidecar != "" {
		if err := writeImageProperties(sess, opts.patch, sidecar); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "kvmify: wrote %s\n", sidecar)
	}
	if opts.patch.Report != "" {
		return sess.WriteReport(ctx)
	}
	return nil
}

// reserveTemp picks an unused temporary name beside path for a file a
// writer creates itself: export creates it only by linking a complete file
// to it, and that link fails if the name was taken meanwhile. Nothing is
// created here, so a kill at any moment leaves no empty file behind.
func reserveTemp(path string) (string, error) {
	for range 100 {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		name := filepath.Join(filepath.Dir(path), fmt.Sprintf("%s%s-%x", outpath.TempPrefix, filepath.Base(path), r))
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no unused temporary name beside %s", path)
}

// progressTo returns a progress callback drawing a bar on w when w is a
// terminal (and nothing otherwise), and a function that finishes the bar.
func progressTo(w io.Writer, what string) (export.Progress, func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	progress := func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription(what), progressbar.OptionShowBytes(true),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		bar.Set64(done)
	}
	return progress, func() {
		if bar != nil {
			bar.Finish()
			bar = nil
		}
	}
}

// openStackBus names each controller as OpenStack's hw_disk_bus image
// property does (Nova's libvirt driver: ide, sata; nvme is accepted by
// recent releases only, which we could not check against a source).
var openStackBus = map[launch.Controller]string{launch.IDE: "ide", launch.AHCI: "sata", launch.NVMe: "nvme"}

// writeImageProperties writes the launch facts of the exported disk as
// OpenStack image properties, through a temporary file renamed into place.
func writeImageProperties(sess *pipeline.Session, pf patchFlags, path string) error {
	f, err := launchFacts(sess.Disk(), sess.Record, pf.Patch)
	if err != nil {
		return fmt.Errorf("the image properties: %w", err)
	}
	machine := "q35"
	if f.Controller == launch.IDE {
		machine = "pc"
	}
	props := map[string]string{
		"hw_machine_type":  machine,
		"hw_disk_bus":      openStackBus[f.Controller],
		"hw_firmware_type": string(f.Firmware),
	}
	if f.Windows != "" {
		props["os_type"] = "windows"
	}
	b, err := json.MarshalIndent(props, "", "  ")
	if err != nil {
		return err
	}
	return outpath.WriteFile(path, append(b, '\n'), 0o644, pf.Force)
}
