package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kvmify/kvmify/registry"
	"github.com/spf13/cobra"
)

// hiveRecoverOptions holds the flags of "hive recover".
type hiveRecoverOptions struct {
	Logs   []string // explicit transaction logs; empty means those beside FILE
	Output string
	Force  bool
}

func newHiveRecoverCmd() *cobra.Command {
	var opts hiveRecoverOptions
	cmd := &cobra.Command{
		Use:   "recover FILE -o OUT [--log LOG]...",
		Short: "Apply a dirty hive's transaction logs and write the clean result",
		Long: `Replay the transaction logs of a dirty hive (one whose last write did not
complete) in memory, the way Windows does when it loads the hive, and write
the recovered, clean hive to OUT. FILE and the logs are only read.

Without --log, the logs beside FILE are used: FILE.LOG, FILE.LOG1 and
FILE.LOG2, names matched case-insensitively. Both log formats are handled:
the old one (XP to Windows 8, dirty vector) and the new one (Windows 8.1 and
later, HvLE entries checked by Marvin32 hashes, applied in sequence order
across LOG1 and LOG2). What was applied is printed.

A hive that is not dirty is copied to OUT unchanged, with a note saying so.
OUT must not exist unless --force is given, and must not be FILE or a log.
The result must pass the registry checker (leaked cells, which Windows
leaves too, are allowed); otherwise nothing is written.

Exit status: 0 recovered (or clean hive copied), 1 failure (dirty hive whose
logs are missing or unusable, unreadable hive, OUT exists, result fails the
check), 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHiveRecover(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVar(&opts.Logs, "log", nil, "transaction log to apply (repeatable; default: the logs beside FILE)")
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "where to write the recovered hive (required)")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "overwrite OUT if it exists")
	return cmd
}

// runHiveRecover recovers the hive args[0] into opts.Output and prints what
// was applied to stdout.
func runHiveRecover(ctx context.Context, opts hiveRecoverOptions, args []string, stdout io.Writer) error {
	file := args[0]
	if opts.Output == "" {
		return usagef("hive recover: -o OUT is required")
	}
	for _, in := range append([]string{file}, opts.Logs...) {
		if recoverSamePath(in, opts.Output) {
			return usagef("hive recover: OUT %s is also an input; write the result elsewhere", opts.Output)
		}
	}
	if _, err := os.Lstat(opts.Output); err == nil && !opts.Force {
		return fmt.Errorf("hive recover: %s exists (use --force to overwrite)", opts.Output)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	out, rep, err := registry.RecoverFile(file, opts.Logs...)
	if rep != nil {
		fmt.Fprint(stdout, rep)
	}
	switch {
	case errors.Is(err, registry.ErrDirtyNoLogs):
		return fmt.Errorf("hive recover: %s is dirty and no transaction logs were found or given; refusing to treat it as clean", file)
	case err != nil:
		return fmt.Errorf("hive recover: %w", err)
	}
	h, err := registry.Open(out)
	if err != nil {
		return fmt.Errorf("hive recover: recovered hive does not parse, nothing written: %w", err)
	}
	if err := h.Check(); err != nil {
		return fmt.Errorf("hive recover: recovered hive fails the check, nothing written: %w", err)
	}
	if err := writeRecoveredHive(opts.Output, out); err != nil {
		return fmt.Errorf("hive recover: %w", err)
	}
	if !rep.Dirty {
		fmt.Fprintf(stdout, "%s is not dirty; copied unchanged to %s\n", file, opts.Output)
	} else {
		fmt.Fprintf(stdout, "wrote recovered hive to %s\n", opts.Output)
	}
	return nil
}

// recoverSamePath reports whether two paths name the same file (or the same
// location, when neither exists yet).
func recoverSamePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

// writeRecoveredHive writes data to a temporary file beside path and renames it
// into place, so a failed write never leaves a truncated hive behind.
func writeRecoveredHive(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
