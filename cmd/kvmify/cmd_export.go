package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/overlay"
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
image (via qemu-img); --format qcow2 --backing a small qcow2 image holding only
the changed clusters, whose backing file is IMAGE itself.

The overlay is --overlay PATH, else <image name>.kvmify-overlay in the current
directory when it exists (export what serve has served), else a temporary one.
A new overlay gets the boot fix as with serve (see 'kvmify serve --help');
--no-patch exports the plain copy-on-write view.

Exit status: 0 success, 1 failure or refusal, 2 usage error.`,
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

func runExport(ctx context.Context, opts exportOptions, args []string, stderr io.Writer) error {
	image, out := args[0], args[1]
	if err := opts.patch.check(); err != nil {
		return err
	}
	if opts.Format != "raw" && opts.Format != "qcow2" {
		return usagef("--format must be raw or qcow2, not %q", opts.Format)
	}
	if opts.Backing && opts.Format != "qcow2" {
		return usagef("--backing goes with --format qcow2")
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists; kvmify does not overwrite files", out)
	}
	if opts.patch.Overlay == "" && !opts.patch.Ephemeral {
		if _, err := os.Stat(overlay.DefaultPath(image)); err != nil {
			opts.patch.Ephemeral = true
		}
	}
	v, err := openPatchedView(ctx, image, opts.patch, stderr)
	if err != nil {
		return err
	}
	defer v.Close()
	if f := v.src.Format(); opts.Backing && f != "raw" && f != "block-device" {
		// The qcow2 would name IMAGE as a raw backing file.
		return fmt.Errorf("--backing needs a raw source, and %s is %s; export without --backing", image, f)
	}
	progress, done := progressTo(stderr, "exporting")
	defer done()
	switch {
	case opts.Format == "raw":
		err = export.Raw(ctx, v.ov, out, progress)
	case opts.Backing:
		var ext []export.Extent
		for _, e := range v.ov.Changes() {
			ext = append(ext, export.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero})
		}
		err = export.QCOW2Backed(ctx, v.ov, image, ext, out, progress)
	default:
		err = export.QCOW2(ctx, v.ov, out, progress)
	}
	if err != nil {
		return err
	}
	done()
	fmt.Fprintf(stderr, "kvmify: wrote %s (%s)\n", out, opts.Format)
	if opts.patch.Report != "" {
		return writeReport(ctx, opts.patch.Report, image, v, opts.patch.Hash)
	}
	return nil
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
