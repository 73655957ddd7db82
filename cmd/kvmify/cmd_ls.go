package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/kvmify/kvmify/pipeline"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/ntfs"
)

type lsOptions struct {
	partition int
	long      bool
	json      bool
}

func newLsCmd() *cobra.Command {
	var opts lsOptions
	cmd := &cobra.Command{
		Use:   "ls IMAGE [PATH]",
		Short: "List a directory of the NTFS volume inside an image",
		Long: `List a directory (default: the root) of the NTFS file system in IMAGE, a
whole disk (MBR or GPT) or a bare partition, opened read-only. Each entry
shows its MFT record number, size and name; --long adds every attribute
with its flags and runs. PATH takes / or \ and is case-insensitive.
The partition is the only or first NTFS one unless --partition is given
(numbered as in inspect, plan and serve).` + exitCodesHelp,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd.Context(), opts, args, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&opts.partition, "partition", 0, pipeline.PartitionHelp)
	cmd.Flags().BoolVarP(&opts.long, "long", "l", false, "also show attributes and runs")
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON")
	return cmd
}

// lsEntry is one listed file, as printed by --json.
type lsEntry struct {
	Name       string   `json:"name"`
	Record     uint64   `json:"record"`
	Size       int64    `json:"size"`
	Directory  bool     `json:"directory"`
	Streams    []string `json:"streams,omitempty"`
	Compressed bool     `json:"compressed,omitempty"`
	Encrypted  bool     `json:"encrypted,omitempty"`
	Sparse     bool     `json:"sparse,omitempty"`
	Attributes []lsAttr `json:"attributes,omitempty"`
}

type lsAttr struct {
	Type            string  `json:"type"`
	Name            string  `json:"name,omitempty"`
	Record          uint64  `json:"record"`
	Resident        bool    `json:"resident"`
	Size            int64   `json:"size"`
	AllocatedSize   int64   `json:"allocated_size"`
	InitializedSize int64   `json:"initialized_size"`
	Compressed      bool    `json:"compressed,omitempty"`
	Encrypted       bool    `json:"encrypted,omitempty"`
	Sparse          bool    `json:"sparse,omitempty"`
	Runs            []lsRun `json:"runs,omitempty"`
}

type lsRun struct {
	VCN    int64 `json:"vcn"`
	LCN    int64 `json:"lcn"` // -1 for a sparse run
	Length int64 `json:"length"`
}

func runLs(ctx context.Context, opts lsOptions, args []string, stdout io.Writer) error {
	path := ""
	if len(args) == 2 {
		path = args[1]
	}
	v, closeImage, err := pipeline.OpenNTFS(args[0], opts.partition)
	if err != nil {
		return err
	}
	defer closeImage()
	f, _, err := v.Lookup(path)
	if err != nil {
		return err
	}
	var entries []lsEntry
	if f.IsDirectory() {
		dir, err := v.ReadDir(f)
		if err != nil {
			return err
		}
		for _, d := range dir {
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.Record == ntfs.RecordRoot && d.Name == "." {
				continue
			}
			child, err := v.OpenRecord(d.Record)
			if err != nil {
				return fmt.Errorf("%s: %w", d.Name, err)
			}
			entries = append(entries, describe(d.Name, child, opts.long))
		}
	} else {
		entries = append(entries, describe(displayName(f, path), f, opts.long))
	}
	if opts.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if entries == nil {
			entries = []lsEntry{}
		}
		return enc.Encode(entries)
	}
	return printLs(stdout, entries, opts.long)
}

// describe gathers what ls shows about one file.
func describe(name string, f *ntfs.File, withAttrs bool) lsEntry {
	e := lsEntry{Name: name, Record: f.Number(), Directory: f.IsDirectory(), Streams: f.StreamNames()}
	if !e.Directory && f.HasData() {
		if s, err := f.Stream(""); err == nil {
			e.Size = s.Size()
			e.Compressed, e.Encrypted, e.Sparse = s.Compressed(), s.Encrypted(), s.Sparse()
		}
	}
	if !withAttrs {
		return e
	}
	for _, a := range f.Attrs {
		la := lsAttr{
			Type: a.Type.String(), Name: a.Name, Record: a.Record, Resident: !a.NonResident,
			Size: a.DataSize, AllocatedSize: a.AllocatedSize, InitializedSize: a.InitializedSize,
			Compressed: a.Compressed(), Encrypted: a.Encrypted(), Sparse: a.Sparse(),
		}
		for _, r := range a.Runs {
			lcn := r.LCN
			if r.Sparse {
				lcn = -1
			}
			la.Runs = append(la.Runs, lsRun{VCN: r.VCN, LCN: lcn, Length: r.Length})
		}
		e.Attributes = append(e.Attributes, la)
	}
	return e
}

func printLs(w io.Writer, entries []lsEntry, long bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	for _, e := range entries {
		name := e.Name
		if e.Directory {
			name += "/"
		}
		fmt.Fprintf(tw, "%d\t%d\t %s\n", e.Record, e.Size, name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !long {
		return nil
	}
	for _, e := range entries {
		fmt.Fprintf(w, "\n%s (record %d):\n", e.Name, e.Record)
		for _, a := range e.Attributes {
			var flags []string
			for _, f := range []struct {
				on   bool
				name string
			}{{a.Resident, "resident"}, {a.Compressed, "compressed"}, {a.Encrypted, "encrypted"}, {a.Sparse, "sparse"}} {
				if f.on {
					flags = append(flags, f.name)
				}
			}
			name := a.Type
			if a.Name != "" {
				name += ":" + a.Name
			}
			fmt.Fprintf(w, "  %-28s record %d size %d alloc %d init %d %s\n", name, a.Record, a.Size, a.AllocatedSize, a.InitializedSize, strings.Join(flags, ","))
			for _, r := range a.Runs {
				if r.LCN < 0 {
					fmt.Fprintf(w, "    vcn %d len %d sparse\n", r.VCN, r.Length)
				} else {
					fmt.Fprintf(w, "    vcn %d lcn %d len %d\n", r.VCN, r.LCN, r.Length)
				}
			}
		}
	}
	return nil
}

// displayName is the file's own long name (the user may have typed it in
// another case or as its DOS alias).
func displayName(f *ntfs.File, path string) string {
	for _, fn := range f.FileNames() {
		if fn.Namespace != ntfs.NamespaceDOS {
			return fn.Name
		}
	}
	parts, _ := ntfs.SplitPath(path)
	return parts[len(parts)-1]
}
