package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kvmify/kvmify/outpath"
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
OUT must not exist unless --force is given, and is never FILE or a log
(given or found beside FILE), compared by device and inode so symlinks and
hard links count; --force does not change that. OUT is written under a
temporary name beside it and renamed into place.
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
	// Every file read is an input: FILE and the logs, given or found
	// beside it. OUT may be none of them, whatever --force says.
	logs := opts.Logs
	if len(logs) == 0 {
		found, err := registry.FindLogs(file)
		if err != nil {
			return fmt.Errorf("hive recover: %w", err)
		}
		logs = found
	}
	var guard outpath.Guard
	if err := guard.AddInput(file, "the hive being recovered"); err != nil {
		return err
	}
	for _, l := range logs {
		if err := guard.AddInput(l, "a transaction log being read"); err != nil {
			return err
		}
	}
	if err := guard.Check(opts.Output, "the recovered hive", opts.Force); err != nil {
		if errors.Is(err, outpath.ErrIsInput) {
			return usageError{fmt.Errorf("hive recover: %w", err)}
		}
		return fmt.Errorf("hive recover: %w", err)
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
	if err := outpath.WriteFile(opts.Output, out, 0o644, opts.Force); err != nil {
		return fmt.Errorf("hive recover: %w", err)
	}
	if !rep.Dirty {
		fmt.Fprintf(stdout, "%s is not dirty; copied unchanged to %s\n", file, opts.Output)
	} else {
		fmt.Fprintf(stdout, "wrote recovered hive to %s\n", opts.Output)
	}
	return nil
}
