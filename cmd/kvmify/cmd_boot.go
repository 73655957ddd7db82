package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/nbd"
	"github.com/kvmify/kvmify/pipeline"
)

type bootOptions struct {
	patch    patchFlags
	Unix     string
	ReadOnly bool
	Memory   string
	CPUs     int
	Display  string
	Network  bool
	Accel    string
	DryRun   bool
	Libvirt  bool
	JSON     bool
}

func newBootCmd() *cobra.Command {
	var opts bootOptions
	cmd := &cobra.Command{
		Use:   "boot IMAGE [flags] [-- QEMU_ARGS...]",
		Short: "Patch IMAGE, serve it, and boot it in QEMU with the matching machine and firmware",
		Long: `Boot IMAGE in qemu-system-x86_64 in one step: apply the boot fix like serve
(into the same persistent overlay), serve the disk over NBD on a private unix
socket, start QEMU with a launch profile that matches the fix, wait for it,
then flush the overlay, stop serving and exit with QEMU's exit status.

The launch profile:
  machine     ide: pc (i440fx, PIIX3 IDE 8086:7010); ahci: q35 (ICH9 AHCI
              8086:2922); nvme: q35 with QEMU's NVMe controller (1b36:0010).
              The disk is attached to exactly that controller.
  firmware    BIOS for an MBR disk with an active partition; UEFI (Debian's
              OVMF) for a GPT disk with an EFI System Partition. The VM's UEFI
              variable store is a copy kept beside the overlay
              (OVERLAY.OVMF_VARS.fd), so its NVRAM persists with the disk.
  accel       KVM when /dev/kvm can be opened, else TCG (said so); --accel.
  memory/CPUs XP 1 GiB/1, Vista/7 2 GiB/2, 8 and later 4 GiB/2; --memory, --cpus.
  clock       local time, unless the hive sets RealTimeIsUniversal.
  input       a USB tablet.
  network     none by default, so a booted evidence disk reaches nothing;
              --network adds an inbox-driver NIC (XP rtl8139, Vista/7 e1000,
              8+ e1000e) on QEMU user-mode networking.
  display     --display none (the default) runs headless with the serial
              console on this terminal; or gtk, sdl, vnc=:N, ...
  read-only   --read-only serves the disk read-only and QEMU keeps the guest's
              writes in a temporary file (snapshot=on) discarded at exit.

--dry-run prints the exact QEMU command line, one line that sh -c runs while
'kvmify serve IMAGE' with the same flags runs (it uses serve's socket, or
--unix), and changes nothing. --libvirt prints a libvirt domain XML for the
same VM whose disk is that NBD socket (kvmify serve as the disk's server);
it also changes nothing. Arguments after -- are appended to QEMU's command
line.
` + overlayHelp + `

Exit status: QEMU's exit status once it has run (0 after a guest power-off);
otherwise 0 success (--dry-run, --libvirt), 1 failure or refusal, 2 usage
error.`,
		Args: func(cmd *cobra.Command, args []string) error {
			n := len(args)
			if d := cmd.ArgsLenAtDash(); d >= 0 {
				n = d
			}
			if n != 1 {
				return usagef("boot takes one IMAGE (and QEMU arguments after --), got %d", n)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBoot(cmd.Context(), opts, args[0], args[1:], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	opts.patch.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&opts.Unix, "unix", "", "serve on this unix socket (default: a private one; with --dry-run/--libvirt, serve's default)")
	f.BoolVar(&opts.ReadOnly, "read-only", false, "export the disk read-only; QEMU keeps guest writes in a temporary file (snapshot=on)")
	f.StringVar(&opts.Memory, "memory", "", "guest memory, e.g. 4G or 2048M (default by Windows version)")
	f.IntVar(&opts.CPUs, "cpus", 0, "guest CPUs (default by Windows version)")
	f.StringVar(&opts.Display, "display", "none", "none (headless, serial console here) or a QEMU -display backend: gtk, sdl, vnc=:0 ...")
	f.BoolVar(&opts.Network, "network", false, "give the guest a NIC (off by default: an evidence disk should reach nothing)")
	f.StringVar(&opts.Accel, "accel", "", "kvm or tcg (default: kvm when /dev/kvm is usable)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print the QEMU command line and change nothing")
	f.BoolVar(&opts.Libvirt, "libvirt", false, "print a libvirt domain XML for the VM and change nothing")
	f.BoolVar(&opts.JSON, "json", false, "with --dry-run: print the profile and argument vector as JSON")
	return cmd
}

func (o *bootOptions) check() (launch.Options, error) {
	lo := launch.Options{CPUs: o.CPUs, Network: o.Network, Display: o.Display, ReadOnly: o.ReadOnly, Accel: o.Accel}
	if o.DryRun && o.Libvirt {
		return lo, usagef("--dry-run and --libvirt exclude each other")
	}
	if o.JSON && !o.DryRun {
		return lo, usagef("--json goes with --dry-run")
	}
	if o.ReadOnly && (o.patch.Report != "") {
		return lo, usagef("--read-only serves no overlay changes to report; drop --report")
	}
	if o.Accel != "" && o.Accel != "kvm" && o.Accel != "tcg" {
		return lo, usagef("--accel %q: want kvm or tcg", o.Accel)
	}
	if o.CPUs < 0 {
		return lo, usagef("--cpus must be positive")
	}
	if o.Memory != "" {
		mib, err := parseMiB(o.Memory)
		if err != nil {
			return lo, usagef("--memory: %v", err)
		}
		lo.MemoryMiB = mib
	}
	if err := o.patch.Patch.Check(); err != nil {
		return lo, err
	}
	return lo, nil
}

// parseMiB reads a memory size: a number of MiB, or one with a K, M, G or T
// suffix (binary units, as QEMU's -m reads them).
func parseMiB(s string) (int, error) {
	mult := 1.0
	num := strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B")
	switch strings.ToUpper(num[len(num)-1:]) {
	case "K":
		mult, num = 1.0/1024, num[:len(num)-1]
	case "M":
		num = num[:len(num)-1]
	case "G":
		mult, num = 1024, num[:len(num)-1]
	case "T":
		mult, num = 1024*1024, num[:len(num)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 4G, 2048M)", s)
	}
	mib := int(v * mult)
	if mib < 16 {
		return 0, fmt.Errorf("%q is less than 16 MiB", s)
	}
	return mib, nil
}

func runBoot(ctx context.Context, opts bootOptions, image string, qemuArgs []string, stdout, stderr io.Writer) error {
	lo, err := opts.check()
	if err != nil {
		return err
	}
	if opts.DryRun || opts.Libvirt {
		return bootDryRun(opts, lo, image, qemuArgs, stdout, stderr)
	}
	qemu, err := exec.LookPath(launch.QEMUBinary)
	if err != nil {
		return fmt.Errorf("%s is not installed (Debian: apt install qemu-system-x86): %w", launch.QEMUBinary, err)
	}

	// The socket is made first, so a busy one is refused before any
	// overlay is created.
	sock := opts.Unix
	var privateDir string
	if sock == "" {
		privateDir, err = os.MkdirTemp("", "kvmify-boot-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(privateDir)
		sock = filepath.Join(privateDir, "nbd.sock")
	} else if err := removeStaleSocket(sock); err != nil {
		return err
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer l.Close()

	req := opts.patch.request(image, stderr)
	req.SourceDirect = opts.ReadOnly
	sess, err := pipeline.Open(ctx, req)
	if err != nil {
		return err
	}
	closeSess := func() error { return sess.Close() }
	defer func() {
		if closeSess != nil {
			closeSess()
		}
	}()

	facts, err := launchFacts(sess.Disk(), sess.Record, opts.patch.Patch)
	if err != nil {
		return err
	}
	kvmOK, kvmWhy := launch.KVMUsable()
	prof, err := launch.NewProfile(facts.Facts, lo, kvmOK, kvmWhy)
	if err != nil {
		return usageError{err}
	}
	var uefi launch.UEFIFiles
	if prof.Firmware == launch.UEFI {
		vars := launch.VarsPath(sess.OverlayPath)
		if sess.OverlayPath == "" {
			if privateDir == "" {
				if privateDir, err = os.MkdirTemp("", "kvmify-boot-"); err != nil {
					return err
				}
				defer os.RemoveAll(privateDir)
			}
			vars = filepath.Join(privateDir, "OVMF_VARS.fd")
		}
		if err := sess.Guard.Check(vars, "the UEFI variable store", true); err != nil {
			return err
		}
		if uefi, err = launch.PrepareVars(vars, false); err != nil {
			return err
		}
	}
	argv, err := launch.QEMUArgs(prof, launch.Disk{Socket: sock}, uefi, qemuArgs)
	if err != nil {
		return err
	}
	printProfile(stderr, facts, prof)
	fmt.Fprintf(stderr, "kvmify: serving %s through %s; starting QEMU:\n  %s\n", image, sess.Describe(),
		launch.ShellQuote(append([]string{launch.QEMUBinary}, argv...)))

	srv := &nbd.Server{Exports: map[string]nbd.Export{"": {
		Name: "", Description: "kvmify " + image, Backend: sess.Disk(), ReadOnly: opts.ReadOnly}}}
	srvCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, l) }()

	vm := exec.Command(qemu, argv...)
	vm.Stdin, vm.Stdout, vm.Stderr = os.Stdin, stdout, stderr
	// If kvmify dies, QEMU must not run on against a socket nobody serves.
	vm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := vm.Start(); err != nil {
		stopServing()
		<-served
		return fmt.Errorf("starting QEMU: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- vm.Wait() }()
	var vmErr error
	select {
	case vmErr = <-waited:
	case <-ctx.Done():
		// A terminal's Ctrl-C reached QEMU too; a SIGTERM to kvmify alone
		// is passed on. Either way QEMU shuts down and is waited for, so
		// no guest write in flight is lost.
		vm.Process.Signal(os.Interrupt)
		vmErr = <-waited
	}

	// QEMU has exited: nothing more will be written. Stop serving (requests
	// in flight are answered) and flush the overlay.
	stopServing()
	if err := <-served; err != nil && !errors.Is(err, nbd.ErrServerClosed) && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "kvmify: NBD server: %v\n", err)
	}
	closeSess = nil
	if err := sess.Close(); err != nil {
		return fmt.Errorf("flushing the overlay after QEMU exited: %w", err)
	}
	var ee *exec.ExitError
	switch {
	case vmErr == nil:
		fmt.Fprintf(stderr, "kvmify: QEMU exited; %s flushed\n", sess.Describe())
		return nil
	case errors.As(vmErr, &ee):
		code := ee.ExitCode()
		if code < 0 {
			code = exitFailure
		}
		return exitStatus{code: code, err: fmt.Errorf("QEMU exited with status %d; %s flushed", ee.ExitCode(), sess.Describe())}
	}
	return fmt.Errorf("waiting for QEMU: %w", vmErr)
}

// exitStatus carries a child's exit status out to main.
type exitStatus struct {
	code int
	err  error
}

func (e exitStatus) Error() string { return e.err.Error() }

// bootDryRun prints the QEMU line or libvirt domain the same flags would
// run, reading only the source (and an existing overlay's record).
func bootDryRun(opts bootOptions, lo launch.Options, image string, qemuArgs []string, stdout, stderr io.Writer) error {
	src, err := pipeline.OpenSource(image)
	if err != nil {
		return err
	}
	defer src.Close()
	ovPath := opts.patch.Overlay
	if ovPath == "" && !opts.patch.Ephemeral {
		if ovPath, err = pipeline.DefaultOverlayPath(image); err != nil {
			return err
		}
	}
	if ovPath != "" {
		if ovPath, err = filepath.Abs(ovPath); err != nil {
			return err
		}
	}
	rec, err := recordedPatch(ovPath)
	if err != nil {
		return err
	}
	if rec == nil && !opts.patch.Patch.NoPatch {
		// What serve would patch: check it can be planned at all, so the
		// printed line is not one that would be refused.
		vols, err := pipeline.FindVolumes(src)
		if err != nil {
			return err
		}
		if _, err := pipeline.ChooseVolume(vols, opts.patch.Patch.Partition); err != nil && !errors.Is(err, pipeline.ErrNoWindows) {
			return err
		}
	}
	sock := opts.Unix
	if sock == "" {
		sock = defaultSocketPath(image)
	}
	if sock, err = filepath.Abs(sock); err != nil {
		return err
	}
	d := launch.Disk{Socket: sock}
	line, facts, prof, err := qemuLine(src, rec, opts.patch.Patch, lo, d, ovPath, qemuArgs)
	if err != nil {
		return err
	}
	if opts.Libvirt {
		var uefi launch.UEFIFiles
		if prof.Firmware == launch.UEFI {
			if uefi, err = launch.PrepareVars(varsFor(ovPath), true); err != nil {
				return err
			}
		}
		b, err := launch.LibvirtXML(launch.DomainName(filepath.Base(image)), prof, d, uefi)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	uefiVars := ""
	if prof.Firmware == launch.UEFI {
		uefiVars = varsFor(ovPath)
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"profile": prof, "boot_mode": facts.Boot, "windows": facts.Windows, "command": line})
	}
	printProfile(stderr, facts, prof)
	if uefiVars != "" {
		fmt.Fprintf(stderr, "  the VM's UEFI variable store %s is made by the first 'kvmify boot'\n", uefiVars)
	}
	_, err = fmt.Fprintln(stdout, line)
	return err
}
