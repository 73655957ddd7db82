package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/source"
)

// verifyOptions holds the flags of "verify".
type verifyOptions struct {
	JSON bool
}

func newVerifyCmd() *cobra.Command {
	var opts verifyOptions
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Check an image against the digests and checksums its container stores",
		Long: `Check IMAGE (opened read-only) against what its container stores about
itself. For an E01 set: read every chunk of every segment, checking each
chunk's checksum, recompute the media's MD5 and SHA-1 and compare them with
the ones the acquiring tool stored. A progress bar is drawn when stderr is a
terminal. qcow2, VHD, VHDX and VMDK store no digest of the disk: verify reads
every allocated byte through their tables once, so a table entry pointing
past the end of a file, a truncated extent or a grain that does not decode
is found. Raw, split raw and NBD sources have nothing to verify.

With --json the output is one object: {"image", "format", "size",
"verifiable", "ok", "checks": [{"name", "stored", "computed", "ok"}],
"problems": [...], "error"}.

Exit status: 0 every stored digest matches (or nothing is stored to check),
1 a digest differs, a chunk is damaged or the image cannot be read, 2 usage
error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), opts, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// verifyReport is the JSON shape of "verify".
type verifyReport struct {
	Image      string        `json:"image"`
	Format     string        `json:"format"`
	Size       int64         `json:"size"`
	Verifiable bool          `json:"verifiable"`
	OK         bool          `json:"ok"`
	Checks     []digestCheck `json:"checks"`
	Problems   []string      `json:"problems,omitempty"`
	Error      string        `json:"error,omitempty"`
}

type digestCheck struct {
	Name     string `json:"name"`
	Stored   string `json:"stored"`
	Computed string `json:"computed"`
	OK       bool   `json:"ok"`
}

// errVerifyFailed is returned when verification found a fault; the report
// has already said which.
var errVerifyFailed = errors.New("verification failed")

// runVerify verifies args[0] and prints the report.
func runVerify(ctx context.Context, opts verifyOptions, args []string, stdout, stderr io.Writer) error {
	im, err := source.Open(args[0])
	if err != nil {
		return err
	}
	defer im.Close()
	rep := verifyReport{Image: args[0], Format: im.Format(), Size: im.Size(), Checks: []digestCheck{}}
	var verr error
	if e, ok := im.(*ewf.Image); ok {
		rep.Verifiable = true
		progress, done := progressTo(stderr, "verifying")
		res, err := ewf.Verify(ctx, e, progress)
		done()
		for _, p := range res.Problems {
			rep.Problems = append(rep.Problems, p.Error())
		}
		if err != nil {
			rep.Error, verr = err.Error(), err
		} else {
			rep.Checks = append(rep.Checks, digestChecks(res)...)
			if len(rep.Checks) > 0 {
				rep.OK = len(res.Mismatches()) == 0
			} else {
				// Every chunk's checksum held; that is all there is to check.
				rep.OK = true
			}
			if !rep.OK {
				verr = fmt.Errorf("%w: %s", errVerifyFailed, strings.Join(res.Mismatches(), "; "))
			}
		}
	} else if structured[strings.SplitN(im.Format(), "/", 2)[0]] {
		// No digest is stored, but every table entry, cluster and grain
		// must resolve and decode: read every allocated byte once.
		rep.Verifiable = true
		progress, done := progressTo(stderr, "verifying")
		n, err := readAllocated(ctx, im, progress)
		done()
		check := digestCheck{Name: "structure", Stored: im.Format(), Computed: fmt.Sprintf("%d allocated bytes read", n), OK: err == nil}
		rep.Checks = append(rep.Checks, check)
		rep.OK = err == nil
		if err != nil {
			rep.Error, verr = err.Error(), err
		}
	} else {
		rep.OK = true
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printVerify(stdout, rep); err != nil {
		return err
	}
	return verr
}

// structured are the container formats whose tables verify can walk by
// reading every allocated byte (they store no digest of the disk).
var structured = map[string]bool{"qcow2": true, "vhd": true, "vhdx": true, "vmdk": true}

// readAllocated reads every byte d holds data for (all of it when d cannot
// tell holes), so that each table entry and compressed cluster behind it is
// resolved and decoded once; it returns how many bytes it read.
func readAllocated(ctx context.Context, d disk.Reader, progress export.Progress) (int64, error) {
	const chunk = 4 << 20
	buf := make([]byte, chunk)
	ext, _ := d.(disk.Extenter)
	var read int64
	for off := int64(0); off < d.Size(); {
		if err := ctx.Err(); err != nil {
			return read, err
		}
		n := min(int64(chunk), d.Size()-off)
		if ext != nil {
			es, err := ext.Extents(off, n)
			if err != nil {
				return read, fmt.Errorf("allocation map at byte %d: %w", off, err)
			}
			if es[0].Flags&disk.ExtentHole != 0 {
				off += min(es[0].Length, d.Size()-off)
				continue
			}
			n = min(n, es[0].Length)
		}
		if _, err := d.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return read, err
		}
		read += n
		off += n
		if progress != nil {
			progress(off, d.Size())
		}
	}
	return read, nil
}

func digestChecks(res ewf.VerifyResult) []digestCheck {
	var out []digestCheck
	add := func(name string, stored, computed []byte) {
		if stored == nil {
			return
		}
		out = append(out, digestCheck{Name: name, Stored: hex.EncodeToString(stored),
			Computed: hex.EncodeToString(computed), OK: hex.EncodeToString(stored) == hex.EncodeToString(computed)})
	}
	add("md5", res.Stored.MD5, res.Computed.MD5)
	add("sha1", res.Stored.SHA1, res.Computed.SHA1)
	return out
}

func printVerify(w io.Writer, rep verifyReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, %d bytes\n", rep.Image, rep.Format, rep.Size)
	switch {
	case !rep.Verifiable:
		fmt.Fprintf(&b, "  %s stores no digest or checksum; nothing to verify\n", rep.Format)
	case rep.Error != "" && len(rep.Checks) == 1 && rep.Checks[0].Name == "structure":
		fmt.Fprintf(&b, "  FAILED: %s\n", rep.Error)
		rep.Checks = nil
	case rep.Error != "":
		fmt.Fprintf(&b, "  FAILED: %s\n", rep.Error)
	case len(rep.Checks) == 0:
		b.WriteString("  every chunk checksum holds; the set stores no MD5 or SHA-1 to compare\n")
	}
	for _, c := range rep.Checks {
		if c.Name == "structure" {
			fmt.Fprintf(&b, "  structure: every table entry resolves and decodes (%s)  ok\n", c.Computed)
			continue
		}
		verdict := "ok"
		if !c.OK {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(&b, "  %-4s stored   %s\n       computed %s  %s\n", c.Name, c.Stored, c.Computed, verdict)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "  repaired from a redundant copy: %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
