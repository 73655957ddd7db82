package ntfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// longName is a 200-character name, so an index block holds only eight.
func longName(prefix string, i int) string {
	s := fmt.Sprintf("%s-%04d-", prefix, i)
	return s + strings.Repeat("x", 200-len(s))
}

// indexShape reports how many blocks a directory's $INDEX_ALLOCATION holds
// (0 without one) and whether it has one, through our reader.
func indexShape(t *testing.T, img, dir string) (blocks int64) {
	t.Helper()
	v := openVolumeFile(t, img)
	f, _, err := v.Lookup(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.stream(AttrIndexAllocation, i30)
	if err != nil {
		return 0
	}
	return s.Size() / v.IndexRecordSize
}

// indxWrites counts the INDX blocks a plan writes.
func indxWrites(ws []disk.Write) int {
	n := 0
	for _, w := range ws {
		if w.What == WriteIndex {
			n++
		}
	}
	return n
}

// TestPlanCreateSplitsFullNode fills a directory through ntfs-3g with
// 200-character names, then looks for a name whose leaf is full (its plan
// writes more than one INDX block) and creates it alone; then creates 120
// more in one plan, which splits blocks repeatedly and overflows the root
// into a deeper tree.
func TestPlanCreateSplitsFullNode(t *testing.T) {
	createTools(t)
	const dir = `\full`
	img := buildCreateImage(t, 4096, 32, func(mnt string) {
		for i := 0; i < 61; i++ {
			writeFile(t, mnt, "full/"+longName("n", 2*i), []byte{byte(i)})
		}
	})
	// ntfs-3g leaves its leaves about half full; fill one leaf to the
	// brim with names that sort inside it, again through ntfs-3g.
	prefix, room := roomyLeaf(t, img, dir)
	withMount(t, img, "", func(mnt string) {
		for j := 0; j < room; j++ {
			writeFile(t, mnt, "full/"+fillName(prefix, "y", j), []byte{1})
		}
	})
	blocksBefore := indexShape(t, img, dir)
	if blocksBefore < 4 {
		t.Fatalf("ntfs-3g made %d index blocks, want several", blocksBefore)
	}
	v := openVolumeFile(t, img)
	one := NewFile{Dir: dir, Name: fillName(prefix, "z", 0), Content: randomBytes(7, 3000)}
	ws, _, err := v.PlanCreate([]NewFile{one}, CreateOptions{Now: createClock})
	if err != nil {
		t.Fatal(err)
	}
	if n := indxWrites(ws); n < 2 {
		t.Fatalf("creation in a full leaf writes %d INDX blocks, want a split (2 or more)", n)
	}
	cp, _ := planAndApply(t, img, []NewFile{one})
	if got := indexShape(t, cp, dir); got != blocksBefore+1 {
		t.Errorf("after one split: %d index blocks, want %d", got, blocksBefore+1)
	}
	checkVolume(t, cp, []string{dir})
	if got := readBack(t, cp, dir+`\`+one.Name); !bytes.Equal(got, one.Content) {
		t.Error("split file reads back differently")
	}
	if n := len(ntfslsNames(t, cp, dir)); n != 62+room {
		t.Errorf("ntfsls lists %d names, want %d", n, 62+room)
	}

	var many []NewFile
	for i := 0; i < 120; i++ {
		many = append(many, NewFile{Dir: dir, Name: longName("m", i), Content: randomBytes(uint64(100+i), 1+i*37)})
	}
	cp2, created := planAndApply(t, img, many)
	// 120 records do not fit the MFT ntfs-3g left: the plan grows it (and
	// so record 0 and its $MFTMirr copy, which ntfsfix compares).
	records := uint64(v.MFT().Size() / v.RecordSize)
	if last := created[len(created)-1].Record; last < records+mftGrowRecords {
		t.Errorf("last record %d; the test wants the MFT (%d records) grown past one step", last, records)
	}
	if got := indexShape(t, cp2, dir); got < blocksBefore+15 {
		t.Errorf("after 120 creations: %d index blocks, want at least %d", got, blocksBefore+15)
	}
	checkVolume(t, cp2, []string{dir})
	if n := len(ntfslsNames(t, cp2, dir)); n != 181+room {
		t.Errorf("ntfsls lists %d names, want %d", n, 181+room)
	}
	withMount(t, cp2, "ro", func(mnt string) {
		for _, nf := range many {
			got, err := os.ReadFile(filepath.Join(mnt, "full", nf.Name))
			if err != nil || !bytes.Equal(got, nf.Content) {
				t.Fatalf("ntfs-3g reads %s: %v (equal %v)", nf.Name, err, bytes.Equal(got, nf.Content))
			}
		}
	})
	ntfs3gStillWrites(t, cp2, "full", many[0].Name, many[119].Name)
}

// fillName is a 200-character name sorting right after prefix's entry.
func fillName(prefix, mark string, j int) string {
	s := fmt.Sprintf("%s%s%03d", prefix, mark, j)
	return s + strings.Repeat("x", 200-len(s))
}

// roomyLeaf finds, through our reader, a leaf INDX block of dir with at
// least two entries and returns the name prefix ("n-0012-") of its first
// entry and how many 200-character entries still fit in it.
func roomyLeaf(t *testing.T, img, dir string) (string, int) {
	t.Helper()
	v := openVolumeFile(t, img)
	f, _, err := v.Lookup(dir)
	if err != nil {
		t.Fatal(err)
	}
	es, err := v.IndexEntries(f)
	if err != nil {
		t.Fatal(err)
	}
	inner := map[int64]bool{}
	nodes := map[int64]bool{}
	for _, e := range es {
		if e.NodeVCN >= 0 {
			nodes[e.NodeVCN] = true
		}
	}
	for vcn := range nodes {
		n, err := v.IndexNode(f, vcn)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range n.Entries {
			if e.Subnode >= 0 {
				inner[vcn] = true
			}
		}
	}
	entryLen := ieKeyOff + align8(fnNameOff+2*200)
	for vcn := range nodes {
		if inner[vcn] {
			continue
		}
		n, err := v.IndexNode(f, vcn)
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Entries) < 3 {
			continue
		}
		h := n.Raw[indxHeaderOff:]
		free := int(le32(h[ihAllocatedOff:])) - int(le32(h[ihIndexLengthOff:]))
		return n.Entries[0].Key.Name[:7], free / entryLen
	}
	t.Fatal("no leaf with two entries")
	return "", 0
}

// TestPlanCreateRootOverflow creates files in a directory whose index is
// only an $INDEX_ROOT until it no longer fits the MFT record, so the plan
// adds $INDEX_ALLOCATION and $BITMAP.
func TestPlanCreateRootOverflow(t *testing.T) {
	createTools(t)
	// With 512-byte clusters a block is 8 VCNs; with 64 KiB clusters
	// (larger than the 4 KiB block) VCNs count 512-byte units.
	for _, cs := range []int64{512, 4096, 65536} {
		t.Run(fmt.Sprintf("cluster%d", cs), func(t *testing.T) { rootOverflow(t, cs) })
	}
}

func rootOverflow(t *testing.T, cs int64) {
	const dir = `\small`
	img := buildCreateImage(t, cs, 32, func(mnt string) {
		writeFile(t, mnt, "small/one.txt", []byte("one"))
		writeFile(t, mnt, "small/two.txt", []byte("two"))
	})
	if b := indexShape(t, img, dir); b != 0 {
		t.Fatalf("small directory already has %d index blocks", b)
	}
	var files []NewFile
	for i := 0; i < 12; i++ {
		files = append(files, NewFile{Dir: dir, Name: fmt.Sprintf("created file number %02d.dat", i), Content: randomBytes(uint64(i), 2000+i)})
	}
	// Then enough long names for the new block to split and the root to
	// take the middle entry.
	for i := 0; i < 12; i++ {
		files = append(files, NewFile{Dir: dir, Name: longName("r", i), Content: randomBytes(uint64(50+i), 3*i)})
	}
	cp, _ := planAndApply(t, img, files)
	if b := indexShape(t, cp, dir); b < 2 {
		t.Errorf("after root overflow and a split: %d index blocks, want 2 or more", b)
	}
	checkVolume(t, cp, []string{dir})
	out := run(t, "ntfsinfo", "-F", "/small", cp)
	if !strings.Contains(out, "$INDEX_ALLOCATION") || !strings.Contains(out, "$BITMAP") {
		t.Errorf("ntfsinfo shows no $INDEX_ALLOCATION/$BITMAP:\n%s", out)
	}
	if n := len(ntfslsNames(t, cp, dir)); n != 26 {
		t.Errorf("ntfsls lists %d names, want 26", n)
	}
	for _, f := range files {
		if got := readBack(t, cp, dir+`\`+f.Name); !bytes.Equal(got, f.Content) {
			t.Errorf("%s reads back differently", f.Name)
		}
	}
	withMount(t, cp, "ro", func(mnt string) {
		for _, f := range files {
			got, err := os.ReadFile(filepath.Join(mnt, "small", f.Name))
			if err != nil || !bytes.Equal(got, f.Content) {
				t.Errorf("ntfs-3g reads %s: %v (equal %v)", f.Name, err, bytes.Equal(got, f.Content))
			}
		}
	})
	ntfs3gStillWrites(t, cp, "small", files[0].Name)
}

// ntfs3gStillWrites mounts img read-write with ntfs-3g, which then removes
// names in dir through our index and writes new files (taking clusters
// and records from the bitmaps we updated), and checks the volume after:
// ntfs-3g must be able to keep using the tree we built, and every file it
// did not remove must read back unchanged in a fresh mount (so none of
// its new clusters overlapped ours).
func ntfs3gStillWrites(t *testing.T, img, dir string, remove ...string) {
	t.Helper()
	var want map[string][32]byte
	withMount(t, img, "", func(mnt string) {
		want = hashTree(t, mnt)
		d := filepath.Join(mnt, dir)
		gone := func(name string) {
			if err := os.Remove(filepath.Join(d, name)); err != nil {
				t.Fatalf("ntfs-3g removes %s: %v", name, err)
			}
			delete(want, "/"+dir+"/"+name)
		}
		for _, n := range remove {
			gone(n)
		}
		es, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range es {
			if i%3 == 0 && e.Type().IsRegular() {
				gone(e.Name())
			}
		}
		for i := 0; i < 20; i++ {
			b := randomBytes(uint64(9000+i), 20000+i*1000)
			name := fmt.Sprintf("after-%02d", i)
			if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			want["/"+dir+"/"+name] = sha256Sum(b)
		}
	})
	checkVolume(t, img, []string{`\` + strings.ReplaceAll(dir, "/", `\`)})
	got := treeHashes(t, img)
	if len(got) != len(want) {
		t.Errorf("after ntfs-3g's changes: %d files, want %d", len(got), len(want))
	}
	for p, h := range want {
		if got[p] != h {
			t.Errorf("after ntfs-3g's changes %s reads differently", p)
		}
	}
}

// checkAllocated reads $Bitmap and $MFT's $BITMAP with ntfscat and checks
// that every created file's record and clusters are marked in use and no
// two files share a cluster.
func checkAllocated(t *testing.T, img string, created []Created) {
	t.Helper()
	clusters := bitmapBits(t, img)
	records, err := exec.Command("ntfscat", "-a", "0xb0", img, "$MFT").Output()
	if err != nil {
		t.Fatalf("ntfscat $MFT $BITMAP: %v", err)
	}
	owner := map[int64]string{}
	for _, c := range created {
		if int64(c.Record)/8 >= int64(len(records)) || !bitSet(records, int64(c.Record)) {
			t.Errorf("%s: record %d free in $MFT's $BITMAP", c.Path, c.Record)
		}
		for _, r := range c.Runs {
			for lcn := r.LCN; lcn < r.LCN+r.Length; lcn++ {
				if !bitSet(clusters, lcn) {
					t.Errorf("%s: cluster %d free in $Bitmap", c.Path, lcn)
				}
				if o, ok := owner[lcn]; ok {
					t.Errorf("cluster %d given to %s and %s", lcn, o, c.Path)
				}
				owner[lcn] = c.Path
			}
		}
	}
}
