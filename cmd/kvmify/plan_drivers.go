package main

import (
	"fmt"
	"strings"

	"github.com/kvmify/kvmify/pipeline"
)

// createFileJSON is one file "plan" says the fix creates (XP's IDE
// drivers, from the install's own driver cabinets).
type createFileJSON struct {
	Path        string    `json:"path"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Cabinet     string    `json:"cabinet"`
	Member      string    `json:"member"`
	ServicePack int       `json:"service_pack"`
	Version     string    `json:"version,omitempty"`
	MFTRecord   uint64    `json:"mft_record"`
	Clusters    int64     `json:"clusters"`
	ClusterSize int64     `json:"cluster_size"`
	Runs        []runJSON `json:"runs"`
}

// runJSON is one extent of a created file's data, in clusters of its
// volume.
type runJSON struct {
	LCN    int64 `json:"lcn"`
	Length int64 `json:"length"`
}

// addDrivers puts the files the plan creates, and their disk writes, into
// the plan report.
func addDrivers(r *planJSON, p *pipeline.Planned) {
	r.CreateFiles = []createFileJSON{}
	r.Writes = len(p.Writes)
	if p.Drivers == nil {
		return
	}
	for _, f := range p.Drivers.Created {
		j := createFileJSON{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Cabinet: f.Cabinet, Member: f.Member,
			ServicePack: f.ServicePack, Version: f.Version, MFTRecord: f.Record, Clusters: f.Clusters(),
			ClusterSize: f.ClusterSize, Runs: []runJSON{}}
		for _, run := range f.Runs {
			j.Runs = append(j.Runs, runJSON{LCN: run.LCN, Length: run.Length})
		}
		r.CreateFiles = append(r.CreateFiles, j)
	}
	var ext []extentJSON
	for _, w := range p.Drivers.Writes {
		if n := len(ext); n > 0 && ext[n-1].What == w.What && ext[n-1].Offset+ext[n-1].Length == w.Offset {
			ext[n-1].Length += int64(len(w.Data))
			continue
		}
		ext = append(ext, extentJSON{Offset: w.Offset, Length: int64(len(w.Data)), What: w.What})
	}
	r.Extents = append(ext, r.Extents...)
}

// printCreated lists the files the plan creates.
func printCreated(b *strings.Builder, files []createFileJSON) {
	if len(files) == 0 {
		return
	}
	fmt.Fprintf(b, "files to create (%d):\n", len(files))
	for _, f := range files {
		ver := f.Version
		if ver == "" {
			ver = "no version resource"
		}
		var runs []string
		for _, r := range f.Runs {
			runs = append(runs, fmt.Sprintf("%d+%d", r.LCN, r.Length))
		}
		sp := "driver.cab (no service pack)"
		if f.ServicePack > 0 {
			sp = fmt.Sprintf("service pack %d", f.ServicePack)
		}
		fmt.Fprintf(b, "  %s: %d bytes, version %s, from %s member %s (%s); MFT record %d, %d clusters at %s\n",
			f.Path, f.Size, ver, f.Cabinet, f.Member, sp, f.MFTRecord, f.Clusters, strings.Join(runs, ", "))
	}
}
