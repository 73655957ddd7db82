package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/fusemount"
	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/pipeline"
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
foreground and unmounts on Ctrl-C or SIGTERM (exit 0), rewriting --report with
the overlay's final extents. A missing or non-empty DIR is refused before any
overlay is created; a dead mount left at DIR by a killed process is reported
with the command that clears it. Without a Windows install (e.g. --no-patch
of a data disk) the SYSTEM files are absent. Only the user who mounts can use
the mount unless --allow-other; then others may read, and only the owner may
write disk.img (the kernel checks the modes shown).
` + overlayHelp + `

Exit status: 0 success, 1 failure or refusal, 2 usage error, 130/143 when
SIGINT/SIGTERM interrupts it (before mounting, for mount).`,
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

func runMount(ctx context.Context, opts mountOptions, args []string, stderr io.Writer) (err error) {
	image, dir := args[0], args[1]
	req := opts.patch.request(image, stderr)
	req.Check = func() error {
		if err := fusemount.CheckMountPoint(dir); err != nil {
			if errors.Is(err, fusemount.ErrStaleMount) {
				return err
			}
			return fmt.Errorf("%w; DIR must be an existing empty directory (mkdir it, or choose another)", err)
		}
		return nil
	}
	sess, err := pipeline.Open(ctx, req)
	if err != nil {
		return err
	}
	defer func() {
		// Closing flushes the overlay and rewrites the report; its error
		// is the command's when nothing failed before.
		if cerr := sess.Close(); err == nil {
			err = cerr
		}
	}()
	files, err := examinerFiles(sess, stderr)
	if err != nil {
		return err
	}
	m, err := fusemount.New(dir, fusemount.Options{Disk: sess.Overlay, ReadOnly: opts.ReadOnly, Files: files, FsName: "kvmify:" + image, AllowOther: opts.AllowOther})
	if err != nil {
		return err
	}
	diskImg, _ := filepath.Abs(filepath.Join(dir, "disk.img"))
	fmt.Fprintf(stderr, "kvmify: mounted %s at %s through %s\n", image, dir, sess.Describe())
	line, _, _, lerr := qemuLine(sess.Disk(), sess.Record, opts.patch.Patch, launch.Options{ReadOnly: opts.ReadOnly},
		launch.Disk{File: diskImg}, sess.OverlayPath, nil)
	if lerr != nil {
		fmt.Fprintf(stderr, "kvmify: note: no QEMU line (%v)\n", lerr)
	} else {
		fmt.Fprintf(stderr, "  %s\n", line)
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

// examinerFiles are the read-only files beside disk.img: the report and,
// when the source holds a Windows install, its SYSTEM hive as the source and
// the served disk hold it.
func examinerFiles(sess *pipeline.Session, stderr io.Writer) ([]fusemount.StaticFile, error) {
	b, err := json.MarshalIndent(sess.Report(), "", "  ")
	if err != nil {
		return nil, err
	}
	files := []fusemount.StaticFile{{Name: "report.json", Data: append(b, '\n')}}
	in := sess.Install()
	if in == nil {
		return files, nil
	}
	files = append(files, fusemount.StaticFile{Name: "SYSTEM.original", Data: in.OnDisk})
	patched, err := systemHive(sess.Overlay, in.Dir)
	if err != nil {
		if sess.Record != nil {
			return nil, fmt.Errorf("reading the SYSTEM hive of the patched disk: %w", err)
		}
		fmt.Fprintf(stderr, "kvmify: note: SYSTEM.patched is absent: the served disk's SYSTEM hive cannot be read: %v\n", err)
		return files, nil
	}
	return append(files, fusemount.StaticFile{Name: "SYSTEM.patched", Data: patched}), nil
}

// systemHive returns the SYSTEM hive file of the install in dir on d.
func systemHive(d disk.Reader, dir string) ([]byte, error) {
	vols, err := pipeline.FindVolumes(d)
	if err != nil {
		return nil, err
	}
	for _, vol := range vols {
		for _, in := range vol.Installs {
			if in.Dir == dir {
				return in.OnDisk, nil
			}
		}
	}
	return nil, pipeline.ErrNoWindows
}
