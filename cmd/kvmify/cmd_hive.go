package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kvmify/kvmify/registry"
	"github.com/spf13/cobra"
)

func newHiveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hive",
		Short: "Inspect Windows registry hive files",
		Long: `Read, check and repair Windows registry hive files (such as
Windows\System32\config\SYSTEM). Hive files are only ever read.` + exitCodesHelp,
		// Without this, cobra would print help and succeed for a mistyped
		// subcommand.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(hiveSubcommands()...)
	return cmd
}

// hiveSubcommands lists the hive subcommands; each lives in its own
// cmd_hive_<name>.go file (or here for export and check).
func hiveSubcommands() []*cobra.Command {
	return []*cobra.Command{
		newHiveExportCmd(),
		newHiveCheckCmd(),
		newHiveRecoverCmd(),
	}
}

// hiveExportOptions holds the flags of "hive export".
type hiveExportOptions struct {
	JSON   bool
	Stderr io.Writer // where the dirty-hive warning goes
}

func newHiveExportCmd() *cobra.Command {
	var opts hiveExportOptions
	cmd := &cobra.Command{
		Use:   "export FILE [KEYPATH]",
		Short: "Print every key and value of a hive (or of one key's subtree)",
		Long: `Print every key below KEYPATH (default: the root) with its values.

KEYPATH is backslash-separated and case-insensitive, relative to the root
(e.g. 'ControlSet001\Services\atapi'). Without --json the output is .reg-like
text; with --json it is one JSON object per key and line:
  {"path": "ControlSet001\\Services\\atapi", "values": [{"name": "Start",
   "type": "REG_DWORD", "data": "<hex of the raw value bytes>"}]}
The root's path is "" and the default value's name is "".

A dirty hive (its last write was not completed) is exported as it is on disk,
with a warning on stderr: its transaction logs have not been applied.

Exit status: 0 success, 1 unreadable hive or missing key, 2 usage error.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Stderr = cmd.ErrOrStderr()
			return runHiveExport(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print one JSON object per key and line")
	return cmd
}

// runHiveExport prints the keys and values of args[0] below the key path
// args[1] (optional) to stdout.
func runHiveExport(ctx context.Context, opts hiveExportOptions, args []string, stdout io.Writer) error {
	h, err := registry.OpenFile(args[0])
	if err != nil {
		return err
	}
	if dirty, why := h.Dirty(); dirty && opts.Stderr != nil {
		fmt.Fprintf(opts.Stderr, "kvmify: warning: %s is a dirty hive (%s); its transaction logs were not applied, so the newest changes may be missing\n", args[0], why)
	}
	start, err := h.Root()
	if err != nil {
		return err
	}
	if len(args) > 1 {
		if start, err = h.Lookup(args[1]); err != nil {
			return err
		}
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	var export func(*registry.Key, []registry.Value) error
	if opts.JSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		export = func(k *registry.Key, vs []registry.Value) error { return exportJSON(enc, k, vs) }
	} else {
		if _, err := io.WriteString(w, "Windows Registry Editor Version 5.00\n"); err != nil {
			return err
		}
		export = func(k *registry.Key, vs []registry.Value) error { return exportReg(w, k, vs) }
	}
	err = start.Walk(func(k *registry.Key) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		vs, err := k.Values()
		if err != nil {
			return err
		}
		return export(k, vs)
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

type jsonKey struct {
	Path   string      `json:"path"`
	Values []jsonValue `json:"values"`
}

type jsonValue struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Data string `json:"data"`
}

func exportJSON(enc *json.Encoder, k *registry.Key, vs []registry.Value) error {
	jk := jsonKey{Path: k.Path(), Values: make([]jsonValue, len(vs))}
	for i, v := range vs {
		jk.Values[i] = jsonValue{Name: v.Name, Type: v.Type.String(), Data: hex.EncodeToString(v.Raw())}
	}
	return enc.Encode(jk)
}

// exportReg writes one key in the style of a .reg file: strings and dwords
// readable, everything else as hex(type) bytes.
func exportReg(w *bufio.Writer, k *registry.Key, vs []registry.Value) error {
	fmt.Fprintf(w, "\n[\\%s]\n", k.Path())
	for _, v := range vs {
		name := "@"
		if v.Name != "" {
			name = regQuote(v.Name)
		}
		w.WriteString(name)
		w.WriteByte('=')
		w.WriteString(regData(v))
		if _, err := w.WriteString("\n"); err != nil {
			return err
		}
	}
	return nil
}

func regData(v registry.Value) string {
	raw := v.Raw()
	switch v.Type {
	case registry.RegSZ:
		// Only a string that round-trips (no embedded NULs, at most a final
		// terminator) is shown as text; anything else keeps its exact bytes.
		if s, err := v.String(); err == nil && len(raw)%2 == 0 && plainUTF16(raw) {
			return regQuote(s)
		}
	case registry.RegDword:
		if n, err := v.Uint32(); err == nil && len(raw) == 4 {
			return fmt.Sprintf("dword:%08x", n)
		}
	}
	var b strings.Builder
	b.Grow(len(raw)*3 + len("hex(ffffffff):"))
	if v.Type == registry.RegBinary {
		b.WriteString("hex:")
	} else {
		fmt.Fprintf(&b, "hex(%x):", uint32(v.Type))
	}
	const digits = "0123456789abcdef"
	for i, c := range raw {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
	return b.String()
}

// plainUTF16 reports whether UTF-16LE bytes hold no NUL unit except a final
// terminator.
func plainUTF16(raw []byte) bool {
	for i := 0; i+1 < len(raw); i += 2 {
		if raw[i] == 0 && raw[i+1] == 0 && i+2 != len(raw) {
			return false
		}
	}
	return true
}

// regQuote quotes a name or string the way .reg files do.
func regQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// hiveCheckOptions holds the flags of "hive check".
type hiveCheckOptions struct {
	JSON   bool
	Stderr io.Writer
}

func newHiveCheckCmd() *cobra.Command {
	var opts hiveCheckOptions
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "Verify a hive's structural invariants",
		Long: `Verify that a hive file is structurally sound: cells tile every hive bin,
every reference lands on an allocated cell of the right kind, subkey lists
are sorted with correct hints and hashes, counts and security reference
counts agree. Each problem is printed on its own line with its file offset.

Findings come in two kinds. Corruption (the above) makes the hive unsafe to
read or edit. Leaked cells (allocated, but nothing references them) only
waste space: Windows leaves them too, so they are listed as leaks and never
fail the check, block recovery or block editing.

With --json one object is printed: {"file", "dirty", "dirty_reason",
"problems": [{"offset", "structure", "message"}], "problem_total",
"leaks": [...same...], "leak_total", "leaked_bytes"}.

Exit status: 0 no corruption (leaks allowed), 1 corruption found or hive
unreadable, 2 usage error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Stderr = cmd.ErrOrStderr()
			return runHiveCheck(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as one JSON object")
	return cmd
}

// hiveCheckJSON is the --json report of "hive check".
type hiveCheckJSON struct {
	File         string             `json:"file"`
	Dirty        bool               `json:"dirty"`
	DirtyReason  string             `json:"dirty_reason,omitempty"`
	Problems     []hiveCheckFinding `json:"problems"`
	ProblemTotal int                `json:"problem_total"`
	Leaks        []hiveCheckFinding `json:"leaks"`
	LeakTotal    int                `json:"leak_total"`
	LeakedBytes  int64              `json:"leaked_bytes"`
}

type hiveCheckFinding struct {
	Offset    int64  `json:"offset"`
	Structure string `json:"structure"`
	Message   string `json:"message"`
}

func findings(errs []*registry.FormatError) []hiveCheckFinding {
	out := make([]hiveCheckFinding, len(errs))
	for i, e := range errs {
		out[i] = hiveCheckFinding{Offset: e.Offset, Structure: e.Structure, Message: strings.TrimPrefix(e.Error(), "registry: ")}
	}
	return out
}

// runHiveCheck prints every problem and leak the checker finds in args[0]
// and fails if there is corruption.
func runHiveCheck(ctx context.Context, opts hiveCheckOptions, args []string, stdout io.Writer) error {
	h, err := registry.OpenFile(args[0])
	if err != nil {
		return err
	}
	dirty, why := h.Dirty()
	if dirty && opts.Stderr != nil {
		fmt.Fprintf(opts.Stderr, "kvmify: warning: %s is a dirty hive (%s); checking it as it is on disk, without its transaction logs\n", args[0], why)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := h.CheckReport()
	failed := func() error {
		if r.Total == 0 {
			return nil
		}
		return fmt.Errorf("%s: %d problem(s) found", args[0], r.Total)
	}
	if opts.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(hiveCheckJSON{File: args[0], Dirty: dirty, DirtyReason: why,
			Problems: findings(r.Problems), ProblemTotal: r.Total,
			Leaks: findings(r.Leaks), LeakTotal: r.LeakTotal, LeakedBytes: r.LeakedBytes}); err != nil {
			return err
		}
		return failed()
	}
	for _, p := range r.Problems {
		fmt.Fprintln(stdout, p)
	}
	if r.Total > len(r.Problems) {
		fmt.Fprintf(stdout, "… and %d more\n", r.Total-len(r.Problems))
	}
	for _, l := range r.Leaks {
		fmt.Fprintln(stdout, "leak:", strings.TrimPrefix(l.Error(), "registry: "))
	}
	if r.LeakTotal > len(r.Leaks) {
		fmt.Fprintf(stdout, "leak: … and %d more\n", r.LeakTotal-len(r.Leaks))
	}
	if err := failed(); err != nil {
		return err
	}
	if r.LeakTotal > 0 {
		_, err = fmt.Fprintf(stdout, "%s: no corruption; %d leaked cell(s), %d bytes (space lost, harmless)\n", args[0], r.LeakTotal, r.LeakedBytes)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: no problems found\n", args[0])
	return err
}
