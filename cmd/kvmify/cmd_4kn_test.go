package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestLs4KnMBRFirstPartitionEmpty builds a 4Kn MBR disk (table written by
// sfdisk through a 4096-byte-sector loop device) whose first partition
// holds no file system and whose NTFS (mkntfs, 4096-byte sectors) lives in
// a logical partition; inspect and ls must find it and list its root as
// ntfsls does.
func TestLs4KnMBRFirstPartitionEmpty(t *testing.T) {
	for _, tool := range []string{"sfdisk", "losetup", "mkntfs", "ntfsls"} {
		testutil.RequireTool(t, tool)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk4k.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-b", "4096", disk).Output()
	if err != nil {
		if testutil.InCI() {
			t.Fatalf("losetup: %v", err)
		}
		t.Skipf("cannot attach a 4096-byte-sector loop device: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	sf := exec.Command("sfdisk", "-q", "--no-reread", dev)
	sf.Stdin = strings.NewReader("label: dos\nsize=8M, type=83\ntype=5\nsize=24M, type=7\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	js, err := exec.Command("sfdisk", "--json", dev).Output()
	if err != nil {
		t.Fatal(err)
	}
	exec.Command("losetup", "-d", dev).Run()
	var tab struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Node        string `json:"node"`
				Start, Size int64
				Type        string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(js, &tab); err != nil {
		t.Fatal(err)
	}
	pt := tab.PartitionTable
	logical := pt.Partitions[len(pt.Partitions)-1]
	if pt.SectorSize != 4096 || logical.Type != "7" || !strings.HasSuffix(logical.Node, "5") {
		t.Fatalf("unexpected table: %s", js)
	}
	part := filepath.Join(dir, "part.img")
	if err := os.WriteFile(part, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(part, logical.Size*4096); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkntfs", "-q", "-F", "-f", "-s", "4096", "-c", "4096", "-p", "0", "-H", "255", "-S", "63", part).CombinedOutput(); err != nil {
		t.Fatalf("mkntfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("dd", "if="+part, "of="+disk, "bs=4096", "seek="+strconv.FormatInt(logical.Start, 10), "conv=notrunc,sparse", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	sum := testutil.FileSHA256(t, disk)

	var buf bytes.Buffer
	if err := runInspect(t.Context(), inspectOptions{JSON: true}, []string{disk}, &buf); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var rep inspectReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range rep.Partitions {
		if p.Index == 5 && p.NTFS && p.Start == logical.Start*4096 {
			found = true
		}
	}
	if !found {
		t.Fatalf("inspect did not find the NTFS logical partition: %s", buf.String())
	}

	buf.Reset()
	if err := runLs(t.Context(), lsOptions{json: true}, []string{disk, "/"}, &buf); err != nil {
		t.Fatalf("ls: %v", err)
	}
	var got []lsEntry
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	oracle, err := exec.Command("ntfsls", "-a", "-s", part).Output()
	if err != nil {
		t.Fatalf("ntfsls: %v", err)
	}
	var want, ours []string
	for _, n := range strings.Split(strings.TrimSpace(string(oracle)), "\n") {
		if n != "." && n != ".." {
			want = append(want, n)
		}
	}
	for _, e := range got {
		ours = append(ours, e.Name)
	}
	sort.Strings(want)
	sort.Strings(ours)
	if strings.Join(ours, "|") != strings.Join(want, "|") || len(ours) < 10 {
		t.Errorf("ls /: %q\nntfsls: %q", ours, want)
	}
	if testutil.FileSHA256(t, disk) != sum {
		t.Error("the disk image changed")
	}
}
