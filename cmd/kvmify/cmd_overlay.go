package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/overlay"
)

func newOverlayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "overlay",
		Short: "Inspect and repair kvmify overlay files",
		Long: `Commands that work on a kvmify overlay file (the copy-on-write file that
'kvmify serve' writes to) without needing its source image.` + exitCodesHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newOverlayInfoCmd(), newOverlayRollbackCmd())
	return cmd
}

// overlayInfoOptions are the flags of 'kvmify overlay info'.
type overlayInfoOptions struct {
	JSON         bool
	VerifySource string // an image to check against what the overlay records
}

func newOverlayInfoCmd() *cobra.Command {
	var opts overlayInfoOptions
	cmd := &cobra.Command{
		Use:   "info PATH [--json] [--verify-source IMAGE]",
		Short: "Show an overlay's source, metadata and changed extents",
		Long: `Prints what an overlay file records about its source, its block size,
commit generation, metadata keys and the changed extents: ranges holding
overlay data, and ranges recorded as zero (trimmed or zeroed; they never read
through to the source). Adjacent extents of the same kind are merged. It
shows the last flushed state and never writes, so it can be run while a
server uses the overlay.

The source is recorded by its size and a sample fingerprint: a sha256 over
the size and about 3 MiB sampled from the image (first and last MiB, 16
spread 64 KiB blocks). It is not the image's sha256 and does not notice a
change outside the samples. An overlay created with a full hash also records
the sha256 of every byte of the image. --verify-source IMAGE checks IMAGE
against both (reading all of IMAGE when a full hash is recorded).

Damage the overlay survived (a commit root copy that fails its check while
its twin is intact) is listed as a warning.

Exit status: 0 success (and IMAGE matches, with --verify-source), 1 the file
cannot be read or is not a valid overlay, or IMAGE does not match, 2 usage
error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOverlayInfo(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text")
	cmd.Flags().StringVar(&opts.VerifySource, "verify-source", "", "check IMAGE against the overlay's records of its source (read-only)")
	return cmd
}

// overlayInfoJSON is the --json output of 'kvmify overlay info'.
type overlayInfoJSON struct {
	Path                    string               `json:"path"`
	SourceSize              int64                `json:"source_size"`
	SourceSampleFingerprint string               `json:"source_sample_fingerprint"`
	SampledBytes            int64                `json:"source_sampled_bytes"`
	SourceSHA256            string               `json:"source_sha256,omitempty"`
	SourceCheck             *overlay.SourceCheck `json:"source_check,omitempty"`
	BlockSize               int                  `json:"block_size"`
	Generation              uint64               `json:"generation"`
	MetaKeys                []string             `json:"meta_keys"`
	DataBytes               int64                `json:"data_bytes"`
	ZeroBytes               int64                `json:"zero_bytes"`
	Extents                 []overlayExtentJSON  `json:"extents"`
	Warnings                []string             `json:"warnings"`
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
		Path:                    path,
		SourceSize:              in.SourceSize,
		SourceSampleFingerprint: in.SourceSampleFingerprint,
		SampledBytes:            in.SampledBytes,
		SourceSHA256:            in.SourceSHA256,
		BlockSize:               in.BlockSize,
		Generation:              in.Generation,
		MetaKeys:                append([]string{}, in.MetaKeys...),
		Extents:                 []overlayExtentJSON{},
		Warnings:                append([]string{}, in.Warnings...),
	}
	if opts.VerifySource != "" {
		src, err := disk.OpenSource(opts.VerifySource)
		if err != nil {
			return err
		}
		out.SourceCheck, err = overlay.CheckSource(path, src)
		src.Close()
		if err != nil {
			return err
		}
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
		err = enc.Encode(out)
	} else {
		err = printOverlayInfo(stdout, out)
	}
	if err == nil && out.SourceCheck != nil && !out.SourceCheck.Matches() {
		err = fmt.Errorf("%w: %s is not the image overlay %s was made for (%s)", overlay.ErrSourceMismatch, opts.VerifySource, path, sourceCheckText(out.SourceCheck))
	}
	return err
}

// sourceCheckText says in words what a source check found.
func sourceCheckText(c *overlay.SourceCheck) string {
	if !c.SizeMatches {
		return "size differs"
	}
	s := "size matches, sample fingerprint "
	if c.SampleMatches {
		s += "matches"
	} else {
		s += "differs"
	}
	switch {
	case !c.FullChecked:
		s += ", full sha256 not recorded"
	case c.FullMatches:
		s += ", full sha256 matches"
	default:
		s += ", full sha256 differs (" + c.SourceSHA256 + ")"
	}
	return s
}

func printOverlayInfo(w io.Writer, in overlayInfoJSON) error {
	keys := "(none)"
	if len(in.MetaKeys) > 0 {
		keys = strings.Join(in.MetaKeys, ", ")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "overlay:\t%s\n", in.Path)
	fmt.Fprintf(tw, "source size:\t%d bytes\n", in.SourceSize)
	fmt.Fprintf(tw, "source sample fingerprint:\t%s (sha256 of the size and %s sampled; not the image's sha256)\n", in.SourceSampleFingerprint, sizeText(in.SampledBytes))
	if in.SourceSHA256 != "" {
		fmt.Fprintf(tw, "source sha256:\t%s (every byte)\n", in.SourceSHA256)
	} else {
		fmt.Fprintf(tw, "source sha256:\tnot recorded\n")
	}
	if in.SourceCheck != nil {
		fmt.Fprintf(tw, "source check:\t%s\n", sourceCheckText(in.SourceCheck))
	}
	fmt.Fprintf(tw, "block size:\t%d bytes\n", in.BlockSize)
	fmt.Fprintf(tw, "generation:\t%d\n", in.Generation)
	fmt.Fprintf(tw, "metadata keys:\t%s\n", keys)
	fmt.Fprintf(tw, "changed:\t%d extents, %d data bytes, %d zero bytes\n", len(in.Extents), in.DataBytes, in.ZeroBytes)
	for _, w := range in.Warnings {
		fmt.Fprintf(tw, "warning:\t%s\n", w)
	}
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

// sizeText prints a byte count in MiB when it is at least one.
func sizeText(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// overlayRollbackOptions are the flags of 'kvmify overlay rollback'.
type overlayRollbackOptions struct {
	ToGeneration uint64
	JSON         bool
}

func newOverlayRollbackCmd() *cobra.Command {
	var opts overlayRollbackOptions
	cmd := &cobra.Command{
		Use:   "rollback PATH [--to-generation N] [--json]",
		Short: "Accept an older commit of an overlay whose newest commit is damaged",
		Long: `kvmify refuses an overlay whose newest commit record is damaged rather than
fall back silently to the previous commit, which would lose every write
flushed since. This command is the explicit acceptance of that loss: it
opens the overlay at generation N (by default the one the refusal names),
reads every block that generation references and checks it against its
recorded checksum, which proves that no block was overwritten since, and
only then commits that state anew, so that the damaged commit is gone. It
refuses, changing nothing, if generation N's record or any of its blocks is
not intact. No source image is needed; the overlay must not be in use.

Exit status: 0 the overlay now holds generation N's state, 1 refused
(nothing changed) or failed, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOverlayRollback(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().Uint64Var(&opts.ToGeneration, "to-generation", 0, "generation to accept (default: the intact one a refusal names)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text")
	return cmd
}

// overlayRollbackJSON is the --json output of 'kvmify overlay rollback'.
type overlayRollbackJSON struct {
	Path       string `json:"path"`
	Accepted   uint64 `json:"accepted_generation"`
	GivenUp    uint64 `json:"given_up_generation,omitempty"` // 0 when unknown
	Generation uint64 `json:"generation"`                    // the overlay's generation now
}

func runOverlayRollback(ctx context.Context, opts overlayRollbackOptions, args []string, stdout io.Writer) error {
	path := args[0]
	out := overlayRollbackJSON{Path: path, Accepted: opts.ToGeneration}
	_, err := overlay.ReadInfo(path)
	var ce *overlay.CommitError
	switch {
	case errors.As(err, &ce):
		out.GivenUp = ce.Lost
		if out.Accepted == 0 {
			if ce.Fallback == 0 {
				return err
			}
			out.Accepted = ce.Fallback
		}
	case err != nil:
		return err
	case out.Accepted == 0:
		return usagef("overlay %s: its newest commit is intact, so there is nothing to roll back to by default; name a generation with --to-generation", path)
	}
	in, err := overlay.Rollback(path, out.Accepted)
	if err != nil {
		return err
	}
	out.Generation = in.Generation
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "overlay %s: accepted generation %d (every block verified); it is now committed as generation %d", path, out.Accepted, out.Generation)
	if out.GivenUp != 0 {
		fmt.Fprintf(stdout, "; generation %d is given up", out.GivenUp)
	}
	fmt.Fprintln(stdout)
	return nil
}
