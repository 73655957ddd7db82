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

	"github.com/kvmify/kvmify/pipeline"
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

// Exit codes of a command interrupted by a signal before it finished, as
// shells report them (128 + the signal number). serve and mount, which run
// until stopped, exit 0 after a clean stop instead.
const (
	exitSIGINT  = 130
	exitSIGTERM = 143
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvmify",
		Short: "Boot a Windows disk image under KVM/QEMU without modifying it",
		Long: `kvmify serves a Windows disk image over NBD (or FUSE) through a copy-on-write
overlay, optionally with the registry fixes that let Windows boot on QEMU's
storage controllers. The source image is only ever opened read-only.

Exit status: 0 success, 1 failure or refusal, 2 usage error; a command
interrupted before it finished exits 130 (SIGINT) or 143 (SIGTERM). serve and
mount, which run until stopped, exit 0 when a signal stops them cleanly.`,
		Version:       toolVersion(),
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
		newBootCmd(),
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
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(interrupted{sig.(syscall.Signal)})
		signal.Stop(sigs) // a second signal kills at once
	}()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	os.Exit(exitCode(ctx, err))
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// exitCode decides the exit status (and prints the error): only main does.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	var in interrupted
	if errors.As(context.Cause(ctx), &in) {
		fmt.Fprintf(os.Stderr, "kvmify: %v; stopped\n", in)
		if in.sig == syscall.SIGTERM {
			return exitSIGTERM
		}
		return exitSIGINT
	}
	fmt.Fprintf(os.Stderr, "kvmify: %v\n", err)
	var st exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	var ue usageError
	if errors.As(err, &ue) || pipeline.IsUsage(err) || isCobraUsageError(err) {
		fmt.Fprintf(os.Stderr, "Run 'kvmify --help' for usage.\n")
		return exitUsage
	}
	return exitFailure
}
