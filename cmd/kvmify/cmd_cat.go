package main

import (
	"context"
	"github.com/kvmify/kvmify/pipeline"
	"io"

	"github.com/spf13/cobra"
)

type catOptions struct {
	partition int
}

func newCatCmd() *cobra.Command {
	var opts catOptions
	cmd := &cobra.Command{
		Use:   "cat IMAGE PATH",
		Short: "Write a file from the NTFS volume inside an image to stdout",
		Long: `Write the content of PATH, a file on the NTFS file system in IMAGE (a whole
disk or a bare partition, opened read-only), to standard output. PATH takes
/ or \ and is case-insensitive; PATH:NAME reads the named stream NAME.
Compressed and sparse files are expanded; encrypted files are an error.
The partition is the only or first NTFS one unless --partition is given
(numbered as in inspect, plan and serve).

Bytes are written as stored on the volume, never fixed up: for /$MFT and
/$MFTMirr that means every record still carries its update sequence number
in the last two bytes of each sector (ntfscat writes those records with
the fixups applied, so the two differ there and only there).` + exitCodesHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCat(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&opts.partition, "partition", 0, pipeline.PartitionHelp)
	return cmd
}

// catChunk bounds each read so cancellation is noticed on big files.
const catChunk = 1 << 20

func runCat(ctx context.Context, opts catOptions, args []string, stdout io.Writer) error {
	v, closeImage, err := pipeline.OpenNTFS(args[0], opts.partition)
	if err != nil {
		return err
	}
	defer closeImage()
	s, err := v.OpenStream(args[1])
	if err != nil {
		return err
	}
	buf := make([]byte, catChunk)
	for off := int64(0); off < s.Size(); {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), s.Size()-off))
		if _, err := s.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return err
		}
		if _, err := stdout.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}
