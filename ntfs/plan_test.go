package ntfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"

	"github.com/kvmify/kvmify/disk"
)

// linkOfTarget marks, in a map of expected file hashes, a hard link of the
// rewritten file: it must read as the new content.
var linkOfTarget [32]byte

// checkApplied verifies a plan applied to cp with the ntfs-3g tools: the
// file reads back as content through ntfscat and an ntfs-3g mount,
// ntfsinfo and ntfscluster agree with the expected sizes, every cluster of
// the file is marked in $Bitmap, ntfsfix finds nothing to do, every other
// file is unchanged, and the $I30 entries carry the new size.
func checkApplied(t *testing.T, cp, p string, content []byte, wantAlloc int64, before map[string][32]byte) {
	t.Helper()
	if got, err := execOutput("ntfscat", cp, p); err != nil || !bytes.Equal(got, content) {
		t.Errorf("ntfscat %s: %d bytes (err %v), want %d bytes of new content (first difference at %d)", p, len(got), err, len(content), firstDifference(got, content))
	}
	sz := ntfsinfoData(t, cp, p)
	want := dataSizes{data: int64(len(content)), alloc: wantAlloc, init: int64(len(content))}
	if sz != want {
		t.Errorf("ntfsinfo -F %s: sizes %+v, want %+v", p, sz, want)
	}
	runs := ntfsclusterRuns(t, cp, p)
	v := openVolumeFile(t, cp)
	total := int64(0)
	bm := bitmapBits(t, cp)
	for i, r := range runs {
		if r.VCN != total {
			t.Errorf("ntfscluster run %d starts at VCN %d, want %d", i, r.VCN, total)
		}
		total += r.Length
		for lcn := r.LCN; lcn < r.LCN+r.Length; lcn++ {
			if !bitSet(bm, lcn) {
				t.Errorf("cluster %d of %s is not marked in $Bitmap", lcn, p)
				break
			}
		}
	}
	if total*v.ClusterSize != wantAlloc {
		t.Errorf("ntfscluster -F %s: %d clusters, want %d bytes allocated", p, total, wantAlloc)
	}
	run(t, "ntfsfix", "-n", cp)
	after := treeHashes(t, cp)
	if after[p] != sha256.Sum256(content) {
		t.Errorf("%s through an ntfs-3g mount does not have the new content", p)
	}
	for name, h := range before {
		if h == linkOfTarget {
			h = sha256.Sum256(content)
		}
		if name != p && after[name] != h {
			t.Errorf("%s changed", name)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d files after, %d before", len(after), len(before))
	}
	f, _, err := v.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := v.OpenRecord(f.FileNames()[0].Parent)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := v.IndexEntries(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Record == f.Number() && (e.Key.DataSize != int64(len(content)) || e.Key.AllocatedSize != wantAlloc) {
			t.Errorf("$I30 entry %q: sizes %d/%d, want %d/%d", e.Key.Name, e.Key.DataSize, e.Key.AllocatedSize, len(content), wantAlloc)
		}
	}
}

// checkBitmapHolds writes a file that takes all free space through ntfs-3g,
// then checks p still reads as content: clusters the plan allocated but
// failed to mark in $Bitmap would have been handed to the filler.
func checkBitmapHolds(t *testing.T, cp, p string, content []byte) {
	t.Helper()
	withMount(t, cp, "", func(mnt string) {
		f, err := os.Create(path.Join(mnt, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		buf := bytes.Repeat([]byte{0xa5}, 1<<20)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		f.Close()
	})
	if got, _ := execOutput("ntfscat", cp, p); !bytes.Equal(got, content) {
		t.Errorf("%s changed after ntfs-3g filled the free space: planned clusters were not marked used", p)
	}
}

func execOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).Output()
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func readAll(t *testing.T, v *Volume, p string) ([]byte, *Stream) {
	t.Helper()
	s, err := v.OpenStream(p)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, s.Size())
	if _, err := s.ReadAt(b, 0); err != nil && len(b) > 0 {
		t.Fatal(err)
	}
	return b, s
}

func countWrites(ws []disk.Write) map[string]int {
	m := map[string]int{}
	for _, w := range ws {
		m[w.What]++
	}
	return m
}

// planCases plans, applies to a copy and verifies the three rewrite cases
// on target: same length (three 4 KiB pages edited), identical content,
// shorter, longer within the allocation and longer than it.
func planCases(t *testing.T, img, target string, before map[string][32]byte) {
	v := openVolumeFile(t, img)
	old, s := readAll(t, v, target)
	oldAlloc := s.AllocatedSize()
	cs := v.ClusterSize
	roundUp := func(n int64) int64 { return (n + cs - 1) / cs * cs }
	t.Run("same-length-three-pages", func(t *testing.T) {
		content := bytes.Clone(old)
		for _, page := range []int{3, 20, 50} {
			content[page*4096+100] ^= 0xff
		}
		ws, err := v.PlanRewrite(target, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 3 || countWrites(ws)[WriteData] != 3 {
			t.Fatalf("got %d writes %v, want 3 data writes", len(ws), countWrites(ws))
		}
		for _, w := range ws {
			if int64(len(w.Data)) != v.SectorSize {
				t.Errorf("write at %d is %d bytes, want one sector", w.Offset, len(w.Data))
			}
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		checkApplied(t, cp, target, content, oldAlloc, before)
	})
	t.Run("identical", func(t *testing.T) {
		ws, err := v.PlanRewrite(target, old, PlanOptions{})
		if err != nil || len(ws) != 0 {
			t.Fatalf("rewriting identical content planned %d writes (err %v)", len(ws), err)
		}
	})
	t.Run("shorter", func(t *testing.T) {
		content := bytes.Clone(old[:len(old)-1000])
		content[0] ^= 1
		ws, err := v.PlanRewrite(target, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := countWrites(ws)
		if c[WriteMFTRecord] == 0 || c[WriteBitmap] != 0 {
			t.Errorf("writes %v: want MFT record writes and no bitmap writes", c)
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		checkApplied(t, cp, target, content, oldAlloc, before)
	})
	t.Run("longer-within-allocation", func(t *testing.T) {
		content := append(bytes.Clone(old), randomBytes(7, int(oldAlloc)-len(old)-7)...)
		ws, err := v.PlanRewrite(target, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := countWrites(ws); c[WriteBitmap] != 0 {
			t.Errorf("writes %v: growing within the allocation must not touch $Bitmap", c)
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		checkApplied(t, cp, target, content, oldAlloc, before)
	})
	t.Run("beyond-allocation", func(t *testing.T) {
		content := append(bytes.Clone(old), randomBytes(8, int(oldAlloc)-len(old)+5*int(cs)+100)...)
		ws, err := v.PlanRewrite(target, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := countWrites(ws)
		t.Logf("writes by kind: %v", c)
		if c[WriteBitmap] == 0 || c[WriteMFTRecord] == 0 {
			t.Errorf("writes %v: want bitmap and MFT record writes", c)
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		wantAlloc := roundUp(int64(len(content)))
		checkApplied(t, cp, target, content, wantAlloc, before)
		added := int((wantAlloc - oldAlloc) / cs)
		if got, was := countBits(bitmapBits(t, cp)), countBits(bitmapBits(t, img)); got != was+added {
			t.Errorf("$Bitmap has %d clusters in use, want %d + %d", got, was, added)
		}
		// ntfscluster -c scans every inode: the new clusters belong to
		// the target and to nothing else.
		f, _, err := v.Lookup(target)
		if err != nil {
			t.Fatal(err)
		}
		owner := "Inode " + strconv.FormatUint(f.Number(), 10) + " /"
		for _, r := range ntfsclusterRuns(t, cp, target) {
			if r.VCN*cs < oldAlloc {
				continue
			}
			out := run(t, "ntfscluster", "-c", strconv.FormatInt(r.LCN, 10)+"-"+strconv.FormatInt(r.LCN+r.Length-1, 10), cp)
			if !strings.Contains(out, owner) || !strings.Contains(out, "one inode found") {
				t.Errorf("ntfscluster -c on new run %+v:\n%s", r, out)
			}
		}
		checkBitmapHolds(t, cp, target, content)
	})
}

// TestPlanRewrite covers the three planning cases on volumes with 512 B,
// 4 KiB and 64 KiB clusters, applying each plan to a copy of the image.
func TestPlanRewrite(t *testing.T) {
	planTools(t)
	for _, tc := range []struct {
		cs     int64
		sizeMB int
	}{{512, 24}, {4096, 24}, {65536, 48}} {
		t.Run("cluster-"+strconv.FormatInt(tc.cs, 10), func(t *testing.T) {
			img := buildPlanImage(t, tc.cs, tc.sizeMB, false)
			origSHA := testutil.FileSHA256(t, img)
			before := treeHashes(t, img)
			v := openVolumeFile(t, img)
			roundUp := func(n int64) int64 { return (n + tc.cs - 1) / tc.cs * tc.cs }

			planCases(t, img, hivePath, before)
			t.Run("beyond-allocation-indx-parent", func(t *testing.T) {
				oldT, st := readAll(t, v, manyTarget)
				content := append(bytes.Clone(oldT), randomBytes(9, 3*int(tc.cs))...)
				ws, err := v.PlanRewrite(manyTarget, content, PlanOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if c := countWrites(ws); c[WriteIndex] == 0 {
					t.Errorf("writes %v: the parent's INDX block must be rewritten", c)
				}
				cp := applyToCopy(t, img, ws, v.SectorSize)
				checkApplied(t, cp, manyTarget, content, max(st.AllocatedSize(), roundUp(int64(len(content)))), before)
			})
			if got := testutil.FileSHA256(t, img); got != origSHA {
				t.Errorf("source image changed: sha256 %s, was %s", got, origSHA)
			}
		})
	}
}

// TestPlanRewriteFragmented rewrites and grows a file spread over many
// runs on a volume whose free space is fragmented too.
func TestPlanRewriteFragmented(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, true)
	origSHA := testutil.FileSHA256(t, img)
	before := treeHashes(t, img)
	runsBefore := ntfsclusterRuns(t, img, fragPath)
	if len(runsBefore) < 4 {
		t.Fatalf("%s has %d runs; the image did not fragment it", fragPath, len(runsBefore))
	}
	v := openVolumeFile(t, img)
	old, s := readAll(t, v, fragPath)

	t.Run("same-length-every-run", func(t *testing.T) {
		content := bytes.Clone(old)
		for _, r := range runsBefore {
			content[r.VCN*v.ClusterSize] ^= 0x55
		}
		ws, err := v.PlanRewrite(fragPath, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != len(runsBefore) || countWrites(ws)[WriteData] != len(ws) {
			t.Errorf("%d writes %v, want one data write per run (%d)", len(ws), countWrites(ws), len(runsBefore))
		}
		for i, r := range runsBefore {
			if !hasWriteAt(ws, r.LCN*v.ClusterSize) {
				t.Errorf("no write at the start of run %d (LCN %d)", i, r.LCN)
			}
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		checkApplied(t, cp, fragPath, content, s.AllocatedSize(), before)
	})
	t.Run("grow-into-fragmented-free-space", func(t *testing.T) {
		// Larger than any free extent, so the allocation must be pieced
		// together from several.
		bits := bitmapBits(t, img)
		largest, cur := int64(0), int64(0)
		for lcn := int64(0); lcn < v.Clusters(); lcn++ {
			if bitSet(bits, lcn) {
				cur = 0
				continue
			}
			cur++
			largest = max(largest, cur)
		}
		grow := int(largest+16) * int(v.ClusterSize)
		content := append(bytes.Clone(old), randomBytes(10, grow)...)
		ws, err := v.PlanRewrite(fragPath, content, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cp := applyToCopy(t, img, ws, v.SectorSize)
		wantAlloc := (int64(len(content)) + v.ClusterSize - 1) / v.ClusterSize * v.ClusterSize
		checkApplied(t, cp, fragPath, content, wantAlloc, before)
		after := ntfsclusterRuns(t, cp, fragPath)
		t.Logf("%d runs before, %d after growing by %d clusters (largest free extent %d)", len(runsBefore), len(after), largest+16, largest)
		if len(after) < len(runsBefore)+2 {
			t.Errorf("%d runs after growing past the largest free extent, %d before: want at least 2 more", len(after), len(runsBefore))
		}
		checkBitmapHolds(t, cp, fragPath, content)
		if got, err := execOutput("ntfscat", "-a", "0x80", "-n", fragStream, cp, fragPath); err != nil || string(got) != fragStreamData {
			t.Errorf("named stream %s after the rewrite: %q (err %v), want %q", fragStream, got, err, fragStreamData)
		}
	})
	if got := testutil.FileSHA256(t, img); got != origSHA {
		t.Errorf("source image changed: sha256 %s, was %s", got, origSHA)
	}
}

func hasWriteAt(ws []disk.Write, off int64) bool {
	for _, w := range ws {
		if w.Offset <= off && off < w.Offset+int64(len(w.Data)) {
			return true
		}
	}
	return false
}

// TestPlanRewriteRefuses checks the files and volume states the planner
// must not write to.
func TestPlanRewriteRefuses(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, false)
	v := openVolumeFile(t, img)
	for _, tc := range []struct {
		path string
		want error
	}{
		{residentPath, ErrNotPlannable},
		{sparsePath, ErrNotPlannable},
		{compressPath, ErrNotPlannable},
		{"/Windows", ErrNotPlannable},
		{"/$MFT", ErrNotPlannable},
		{"/no/such/file", ErrNotFound},
	} {
		_, err := v.PlanRewrite(tc.path, []byte("x"), PlanOptions{})
		var fe *FormatError
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.path, err, tc.want)
		} else if tc.want == ErrNotPlannable && !errors.As(err, &fe) {
			t.Errorf("%s: %v is not a FormatError", tc.path, err)
		}
	}
	huge := make([]byte, 64<<20)
	if _, err := v.PlanRewrite(hivePath, huge, PlanOptions{}); !errors.Is(err, ErrNoSpace) {
		t.Errorf("growing past the free space: got %v, want ErrNoSpace", err)
	}

	// A hibernated system: hiberfil.sys starts with "hibr".
	withMount(t, img, "", func(mnt string) {
		hdr := append([]byte("hibr"), make([]byte, 4092)...)
		if err := os.WriteFile(path.Join(mnt, "hiberfil.sys"), hdr, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	v = openVolumeFile(t, img)
	old, _ := readAll(t, v, hivePath)
	content := bytes.Clone(old)
	content[0] ^= 1
	if _, err := v.PlanRewrite(hivePath, content, PlanOptions{}); !errors.Is(err, ErrUnsafeVolume) {
		t.Errorf("hibernated volume: got %v, want ErrUnsafeVolume", err)
	}
	if ws, err := v.PlanRewrite(hivePath, content, PlanOptions{AllowUnsafeVolume: true}); err != nil || len(ws) != 1 {
		t.Errorf("hibernated volume with override: %d writes, err %v; want 1 write", len(ws), err)
	}
}

// TestPlanRunlistFull asks for a runlist far larger than a 1 KiB record
// can hold.
func TestPlanRunlistFull(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, false)
	v := openVolumeFile(t, img)
	f, _, err := v.Lookup(hivePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Stream("")
	if err != nil {
		t.Fatal(err)
	}
	p := &planner{v: v, f: f, s: s, records: map[uint64][]byte{}, recordExtents: map[uint64][]Extent{}}
	var runs []Run
	for i := int64(0); i < 400; i++ {
		runs = append(runs, Run{VCN: i, LCN: 1000 + 2*i, Length: 1})
	}
	if err := p.resizeRunlist(s.Fragments[0], runs); !errors.Is(err, ErrRunlistFull) {
		t.Fatalf("got %v, want ErrRunlistFull", err)
	}
}

// TestAllocateAcrossHoles asks the allocator for every free cluster of a
// volume whose free space is 8-cluster holes, and checks against $Bitmap
// as ntfscat reads it that it picked exactly the free clusters.
func TestAllocateAcrossHoles(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, true)
	v := openVolumeFile(t, img)
	bits := bitmapBits(t, img)
	free := int64(0)
	for lcn := int64(0); lcn < v.Clusters(); lcn++ {
		if !bitSet(bits, lcn) {
			free++
		}
	}
	// Nearest single extent, against a brute-force search of the bitmap.
	fits := func(start, need int64) bool {
		for lcn := start; lcn < start+need; lcn++ {
			if lcn < 0 || lcn >= v.Clusters() || bitSet(bits, lcn) {
				return false
			}
		}
		return true
	}
	for _, need := range []int64{1, 8, 9, 30} {
		for goal := int64(0); goal < v.Clusters(); goal += v.Clusters() / 7 {
			// Distance is from goal to the start of a fit after it, or
			// from the end of a fit before it to goal; ties go after.
			want, best := int64(-1), v.Clusters()
			for d := int64(0); d < best; d++ {
				if fits(goal+d, need) {
					want, best = goal+d, d
				}
			}
			for d := int64(0); d < best; d++ {
				if goal-d-need >= 0 && fits(goal-d-need, need) {
					want, best = goal-d-need, d
				}
			}
			bm, err := v.openBitmap()
			if err != nil {
				t.Fatal(err)
			}
			got, err := bm.allocate(need, goal)
			if want < 0 {
				if len(got) < 2 && err == nil {
					t.Errorf("need %d near %d: got %v, want several runs (no extent is large enough)", need, goal, got)
				}
				continue
			}
			if err != nil || len(got) != 1 || got[0].LCN != want {
				t.Errorf("need %d near %d: got %v (err %v), want LCN %d", need, goal, got, err, want)
			}
		}
	}

	bm, err := v.openBitmap()
	if err != nil {
		t.Fatal(err)
	}
	runs, err := bm.allocate(free, v.Clusters()/2)
	if err != nil {
		t.Fatalf("allocating all %d free clusters: %v", free, err)
	}
	if len(runs) < 10 {
		t.Errorf("%d runs for %d free clusters in 8-cluster holes: want many", len(runs), free)
	}
	seen := map[int64]bool{}
	total := int64(0)
	for _, r := range runs {
		for lcn := r.LCN; lcn < r.LCN+r.Length; lcn++ {
			if bitSet(bits, lcn) || seen[lcn] || lcn >= v.Clusters() {
				t.Fatalf("allocated cluster %d was not free (or was given twice)", lcn)
			}
			seen[lcn] = true
		}
		total += r.Length
	}
	if total != free {
		t.Errorf("allocated %d clusters, want %d", total, free)
	}
	if _, err := bm.allocate(1, 0); !errors.Is(err, ErrNoSpace) {
		t.Errorf("allocating on a full volume: got %v, want ErrNoSpace", err)
	}
}

// linksTarget is a file given many hard links.
const linksTarget = "/links/target"

// The corpus disk's NTFS partition: its start is stated in the corpus
// README, its length is the MBR entry's (sfdisk -d). The copy must end
// where the partition does, or ntfsfix misses the backup boot sector.
const (
	corpusPartitionLBA     = 128
	corpusPartitionSectors = 59392
)

// TestPlanRewriteWindowsVolume runs the three cases on the NTFS volume that
// Windows formatted (2 KiB clusters), in a directory Windows created, with
// a hive-sized file added by ntfs-3g.
func TestPlanRewriteWindowsVolume(t *testing.T) {
	planTools(t)
	disk := testutil.CorpusFile(t, "disk-mbr-ntfs-win-32M.raw")
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	img := path.Join(t.TempDir(), "win.part")
	if err := os.WriteFile(img, b[corpusPartitionLBA*512:(corpusPartitionLBA+corpusPartitionSectors)*512], 0o644); err != nil {
		t.Fatal(err)
	}
	const target = "/test_dir/SYSTEM"
	withMount(t, img, "", func(mnt string) {
		if err := os.WriteFile(path.Join(mnt, target), randomBytes(12, 300000+1000), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	origSHA := testutil.FileSHA256(t, img)
	before := treeHashes(t, img)
	planCases(t, img, target, before)
	if got := testutil.FileSHA256(t, img); got != origSHA {
		t.Errorf("source image changed: sha256 %s, was %s", got, origSHA)
	}
}

// TestPlanRewriteAttributeList rewrites a file whose 60 hard links push its
// $FILE_NAME attributes into extension records ($ATTRIBUTE_LIST), so the
// sizes are patched in several records and in every link's $I30 entry.
func TestPlanRewriteAttributeList(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, false)
	withMount(t, img, "", func(mnt string) {
		target := path.Join(mnt, linksTarget)
		if err := os.MkdirAll(path.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, randomBytes(14, planHiveBase+1000), 0o644); err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			if err := os.Link(target, path.Join(path.Dir(target), "hard-link-with-a-rather-long-name-to-fill-the-record-"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	})
	v := openVolumeFile(t, img)
	f, _, err := v.Lookup(linksTarget)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.AttrList) == 0 || len(f.Extensions) == 0 {
		t.Fatalf("%s has no attribute list (%d extension records): the image does not exercise it", linksTarget, len(f.Extensions))
	}
	origSHA := testutil.FileSHA256(t, img)
	before := treeHashes(t, img)
	for name := range before {
		if path.Dir(name) == path.Dir(linksTarget) {
			before[name] = linkOfTarget
		}
	}
	planCases(t, img, linksTarget, before)
	if got := testutil.FileSHA256(t, img); got != origSHA {
		t.Errorf("source image changed: sha256 %s, was %s", got, origSHA)
	}
}

// TestPlanRewriteRefusesDirtyVolume sets the dirty flag in $Volume (the
// record rewritten with protectFixups, so ntfsinfo's reading of the flag
// also checks the new update sequence) and expects ErrUnsafeVolume.
func TestPlanRewriteRefusesDirtyVolume(t *testing.T) {
	planTools(t)
	img := buildPlanImage(t, 4096, 24, false)
	v := openVolumeFile(t, img)
	vol, err := v.OpenRecord(RecordVolume)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Clone(vol.Record.Raw)
	patched := false
	for _, a := range vol.Attrs {
		if a.Type == AttrVolumeInformation && !a.NonResident {
			valueOff := a.RecordOffset + int(le16(raw[a.RecordOffset+attrValueOffsetOff:]))
			raw[valueOff+viFlagsOff] |= VolumeFlagDirty
			patched = true
		}
	}
	if !patched {
		t.Fatal("$Volume has no resident $VOLUME_INFORMATION")
	}
	if err := protectFixups(raw, vol.Record.Extents[0].Offset, "MFT record"); err != nil {
		t.Fatal(err)
	}
	ws := splitWrite(raw, vol.Record.Extents, WriteMFTRecord)
	// Records 0-3 are mirrored in $MFTMirr, which ntfs-3g compares.
	mirror := v.Boot().MFTMirrCluster*v.ClusterSize + RecordVolume*v.RecordSize
	ws = append(ws, disk.Write{Offset: mirror, Data: raw, What: WriteMFTRecord})
	dirty := applyToCopy(t, img, ws, v.SectorSize)
	if out := run(t, "ntfsinfo", "-f", "-m", dirty); !regexp.MustCompile(`Volume Flags: 0x[0-9a-f]*[13579bdf]\b`).MatchString(out) {
		t.Fatalf("ntfsinfo does not see the dirty flag:\n%s", out)
	}
	dv := openVolumeFile(t, dirty)
	old, _ := readAll(t, dv, hivePath)
	content := bytes.Clone(old)
	content[0] ^= 1
	_, err = dv.PlanRewrite(hivePath, content, PlanOptions{})
	if !errors.Is(err, ErrUnsafeVolume) || !strings.Contains(err.Error(), "dirty") {
		t.Errorf("dirty volume: got %v, want ErrUnsafeVolume naming the dirty flag", err)
	}
	if ws, err := dv.PlanRewrite(hivePath, content, PlanOptions{AllowUnsafeVolume: true}); err != nil || len(ws) != 1 {
		t.Errorf("dirty volume with override: %d writes, err %v; want 1 write", len(ws), err)
	}
}
