package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fusemount"
	"github.com/kvmify/kvmify/windows"
)

type mountOptions struct {
	patch      patchFlags
	ReadOnly   bool
	AllowOther bool
}

func newMountCmd() *cobra.Command {
	var opts mountOptions
	cmd := &cobra.Command{
		Use:   "mount IMAGE DIR",
		Short: "Show the patched disk as DIR/disk.img in a FUSE mount",
		Long: `Mount a FUSE file system at DIR (an empty directory) holding:

  disk.img         the disk as kvmify serves it (boot fix in the overlay);
                   writes go to the overlay, never to IMAGE
  report.json      what was patched (registry changes, extents with hashes)
  SYSTEM.original  the SYSTEM hive as stored in IMAGE (read-only)
  SYSTEM.patched   the SYSTEM hive as the disk now holds it (read-only)

Use it with: qemu-system-x86_64 -drive file=DIR/disk.img,format=raw,cache=none
The overlay and boot-fix flags are those of 'kvmify serve'. kvmify stays in the
foreground and unmounts on Ctrl-C or SIGTERM. A dead mount left at DIR by a
killed process is reported with the command that clears it. Only the user who
mounts can use the mount unless --allow-other; then others may read, and only
the owner may write disk.img (the kernel checks the modes shown).

Exit status: 0 success, 1 failure or refusal, 2 usage error.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), opts, args, cmd.ErrOrStderr())
		},
	}
	opts.patch.register(cmd.Flags())
	cmd.Flags().BoolVar(&opts.ReadOnly, "read-only", false, "make disk.img read-only")
	cmd.Flags().BoolVar(&opts.AllowOther, "allow-other", false, "let other users (e.g. a QEMU running as another user) use the mount, as the files' modes allow: read-only for them")
	return cmd
}

func runMount(ctx context.Context, opts mountOptions, args []string, stderr io.Writer) error {
	image, dir := args[0], args[1]
	if err := opts.patch.check(); err != nil {
		return err
	}
	v, err := openPatchedView(ctx, image, opts.patch, stderr)
	if err != nil {
		return err
	}
	defer v.Close()
	files, err := examinerFiles(image, v)
	if err != nil {
		return err
	}
	m, err := fusemount.New(dir, fusemount.Options{Disk: v.ov, ReadOnly: opts.ReadOnly, Files: files, FsName: "kvmify:" + image, AllowOther: opts.AllowOther})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "kvmify: mounted %s at %s\n  qemu-system-x86_64 -drive file=%s/disk.img,format=raw,cache=none\n", image, dir, dir)
	if opts.patch.Report != "" {
		if err := writeReport(ctx, opts.patch.Report, image, v, opts.patch.Hash); err != nil {
			m.Unmount()
			return err
		}
	}
	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()
	select {
	case <-unmounted: // unmounted from outside (fusermount3 -u)
		return nil
	case <-ctx.Done():
	}
	// A user may still have disk.img open; keep trying for a while so a
	// closing QEMU can finish, then say what holds it.
	for i := 0; ; i++ {
		err := m.Unmount()
		if err == nil {
			<-unmounted
			fmt.Fprintf(stderr, "kvmify: unmounted %s\n", dir)
			return nil
		}
		if i == 50 {
			return fmt.Errorf("unmount %s: %w (is disk.img still open?); the overlay was flushed", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// examinerFiles are the read-only files beside disk.img: the report and the
// SYSTEM hive as the source and the patched disk hold it.
func examinerFiles(image string, v *patchedView) ([]fusemount.StaticFile, error) {
	rep := forensicReport{Tool: "kvmify " + toolVersion(), Source: image, SourceSize: v.src.Size(),
		Overlay: v.ov.Path(), Patch: v.record, Changed: v.ov.Changes()}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	files := []fusemount.StaticFile{{Name: "report.json", Data: append(b, '\n')}}
	orig, err := systemHive(v.src)
	if err != nil {
		if errors.Is(err, errNoWindows) {
			return files, nil
		}
		return nil, fmt.Errorf("reading the SYSTEM hive of the source: %w", err)
	}
	patched, err := systemHive(v.ov)
	if err != nil {
		return nil, fmt.Errorf("reading the SYSTEM hive of the patched disk: %w", err)
	}
	return append(files,
		fusemount.StaticFile{Name: "SYSTEM.original", Data: orig},
		fusemount.StaticFile{Name: "SYSTEM.patched", Data: patched}), nil
}

// systemHive returns the SYSTEM hive file of the first Windows install on d.
func systemHive(d disk.Reader) ([]byte, error) {
	vols, err := windows.Find(d, d.Size(), windows.OpenNTFS)
	if err != nil {
		return nil, err
	}
	for _, vol := range vols {
		if len(vol.Installs) > 0 {
			return vol.Installs[0].OnDisk, nil
		}
	}
	return nil, errNoWindows
}
