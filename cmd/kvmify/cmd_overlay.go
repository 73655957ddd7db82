package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/overlay"
)

func newOverlayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "overlay",
		Short: "Inspect kvmify overlay files",
		Long: `Commands that work on a kvmify overlay file (the copy-on-write file that
'kvmify serve' writes to) without needing its source image.` + exitCodesHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newOverlayInfoCmd())
	return cmd
}

// overlayInfoOptions are the flags of 'kvmify overlay info'.
type overlayInfoOptions struct {
	JSON bool
}

func newOverlayInfoCmd() *cobra.Command {
	var opts overlayInfoOptions
	cmd := &cobra.Command{
		Use:   "info PATH [--json]",
		Short: "Show an overlay's source, metadata and changed extents",
		Long: `Prints what an overlay file records about its source (size and fingerprint),
its block size, commit generation, metadata keys and the changed extents:
ranges holding overlay data, and ranges recorded as zero (trimmed or zeroed;
they never read through to the source). Adjacent extents of the same kind are
merged. It shows the last flushed state and never writes, so it can be run
while a server uses the overlay.

Exit status: 0 success, 1 the file cannot be read or is not a valid overlay,
2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOverlayInfo(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text")
	return cmd
}

// overlayInfoJSON is the --json output of 'kvmify overlay info'.
type overlayInfoJSON struct {
	Path              string              `json:"path"`
	SourceSize        int64               `json:"source_size"`
	SourceFingerprint string              `json:"source_fingerprint"`
	BlockSize         int                 `json:"block_size"`
	Generation        uint64              `json:"generation"`
	MetaKeys          []string            `json:"meta_keys"`
	DataBytes         int64               `json:"data_bytes"`
	ZeroBytes         int64               `json:"zero_bytes"`
	Extents           []overlayExtentJSON `json:"extents"`
}

type overlayExtentJSON struct {
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	Kind   string `json:"kind"` // "data" or "zero"
}

func runOverlayInfo(ctx context.Context, opts overlayInfoOptions, args []string, stdout io.Writer) error {
	path := args[0]
	in, err := overlay.ReadInfo(path)
	if err != nil {
		return err
	}
	out := overlayInfoJSON{
		Path:              path,
		SourceSize:        in.SourceSize,
		SourceFingerprint: in.SourceSampleFingerprint,
		BlockSize:         in.BlockSize,
		Generation:        in.Generation,
		MetaKeys:          append([]string{}, in.MetaKeys...),
		Extents:           []overlayExtentJSON{},
	}
	for _, e := range in.Extents {
		kind := "data"
		if e.Zero {
			kind = "zero"
			out.ZeroBytes += e.Length
		} else {
			out.DataBytes += e.Length
		}
		out.Extents = append(out.Extents, overlayExtentJSON{Offset: e.Offset, Length: e.Length, Kind: kind})
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printOverlayInfo(stdout, out)
}

func printOverlayInfo(w io.Writer, in overlayInfoJSON) error {
	keys := "(none)"
	if len(in.MetaKeys) > 0 {
		keys = strings.Join(in.MetaKeys, ", ")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "overlay:\t%s\n", in.Path)
	fmt.Fprintf(tw, "source size:\t%d bytes\n", in.SourceSize)
	fmt.Fprintf(tw, "source fingerprint:\t%s\n", in.SourceFingerprint)
	fmt.Fprintf(tw, "block size:\t%d bytes\n", in.BlockSize)
	fmt.Fprintf(tw, "generation:\t%d\n", in.Generation)
	fmt.Fprintf(tw, "metadata keys:\t%s\n", keys)
	fmt.Fprintf(tw, "changed:\t%d extents, %d data bytes, %d zero bytes\n", len(in.Extents), in.DataBytes, in.ZeroBytes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(in.Extents) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "offset\tlength\tkind\t\n")
	for _, e := range in.Extents {
		fmt.Fprintf(tw, "%d\t%d\t%s\t\n", e.Offset, e.Length, e.Kind)
	}
	return tw.Flush()
}
