// Command kvmify makes a Windows disk image boot under KVM/QEMU without
// modifying the image: fixes go into a copy-on-write overlay that is served
// over NBD or FUSE.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes; only main decides them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error caused by how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

const exitCodesHelp = `
Exit status: 0 success, 1 failure, 2 usage error.`

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvmify",
		Short: "Boot a Windows disk image under KVM/QEMU without modifying it",
		Long: `kvmify serves a Windows disk image over NBD (or FUSE) through a copy-on-write
overlay, optionally with the registry fixes that let Windows boot on QEMU's
storage controllers. The source image is only ever opened read-only.` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(commands()...)
	return root
}

// commands lists every subcommand; each lives in its own cmd_<name>.go file.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(),
		newServeCmd(),
		newOverlayCmd(),
		newHiveCmd(),
		newInspectCmd(),
		newPlanCmd(),
		newMountCmd(),
		newExportCmd(),
		newLsCmd(),
		newCatCmd(),
		newVerifyCmd(),
	}
}

// exactArgs is cobra.ExactArgs with the error marked as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with the error marked as a usage error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(min, max)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintf(os.Stderr, "kvmify: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(os.Stderr, "Run 'kvmify --help' for usage.\n")
		os.Exit(exitUsage)
	}
	os.Exit(exitFailure)
}
