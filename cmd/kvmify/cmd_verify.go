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

	"github.com/kvmify/kvmify/ewf"
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
terminal. Formats that store no digest (raw, split raw, NBD) are reported as
having nothing to verify.

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
	case rep.Error != "":
		fmt.Fprintf(&b, "  FAILED: %s\n", rep.Error)
	case len(rep.Checks) == 0:
		b.WriteString("  every chunk checksum holds; the set stores no MD5 or SHA-1 to compare\n")
	}
	for _, c := range rep.Checks {
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
