package ntfs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/partition"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// createClock is the plan's clock in these tests.
var createClock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// createTools skips (or fails under CI) when a peer is missing.
func createTools(t testing.TB) {
	t.Helper()
	planTools(t)
	testutil.RequireTool(t, "ntfsls")
}

// buildCreateImage makes a sparse NTFS volume with mkntfs and fills it with
// ntfs-3g through fill, called with the mount point.
func buildCreateImage(t *testing.T, cs int64, sizeMB int, fill func(mnt string)) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "mkntfs", "-q", "-F", "-f", "-c", strconv.FormatInt(cs, 10), "-s", "512", "-p", "0", "-H", "255", "-S", "63", "-L", "create", img)
	withMount(t, img, "", func(mnt string) { fill(mnt) })
	return img
}

func writeFile(t *testing.T, mnt, p string, b []byte) {
	t.Helper()
	full := filepath.Join(mnt, filepath.FromSlash(strings.ReplaceAll(p, `\`, "/")))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// xpLikeTree fills a volume the way the MergeIDE case meets it: a
// System32\drivers of hundreds of files (so its index spans several
// blocks), a config directory, a few root files and a small directory
// whose index still fits its $INDEX_ROOT.
func xpLikeTree(t *testing.T, drivers int) func(string) {
	return func(mnt string) {
		for i := 0; i < drivers; i++ {
			name := fmt.Sprintf("d%03d.sys", i)
			if i%3 == 0 {
				name = fmt.Sprintf("vendor-driver-with-long-name-%03d.sys", i)
			}
			writeFile(t, mnt, "WINDOWS/system32/drivers/"+name, randomBytes(uint64(i), 100+i*7))
		}
		writeFile(t, mnt, "WINDOWS/system32/config/SYSTEM", randomBytes(1000, 300000))
		writeFile(t, mnt, "boot.ini", []byte("[boot loader]\r\n"))
		writeFile(t, mnt, "small/one.txt", []byte("one"))
		writeFile(t, mnt, "small/two.txt", []byte("two"))
	}
}

// planAndApply plans files on img, applies the writes to a copy and
// returns it, checking the source is unchanged.
func planAndApply(t *testing.T, img string, files []NewFile) (string, []Created) {
	t.Helper()
	before := testutil.FileSHA256(t, img)
	v := openVolumeFile(t, img)
	ws, created, err := v.PlanCreate(files, CreateOptions{Now: createClock})
	if err != nil {
		t.Fatalf("PlanCreate: %v", err)
	}
	checkNoOverlap(t, ws)
	cp := applyToCopy(t, img, ws, v.SectorSize)
	if after := testutil.FileSHA256(t, img); after != before {
		t.Fatal("source image changed")
	}
	checkAllocated(t, cp, created)
	return cp, created
}

func checkNoOverlap(t *testing.T, ws []disk.Write) {
	t.Helper()
	for i := 1; i < len(ws); i++ {
		if p := ws[i-1]; p.Offset+int64(len(p.Data)) > ws[i].Offset {
			t.Fatalf("%s write at %d (%d bytes) overlaps %s write at %d", p.What, p.Offset, len(p.Data), ws[i].What, ws[i].Offset)
		}
	}
}

// checkVolume runs the ntfs-3g tools' checks on img: ntfsfix -n finds
// nothing; for every directory, ntfs-3g finds each name ntfsls lists by a
// lookup in a fresh mount (a descent of the $I30 B+ tree by collation, so
// an entry out of order is not found), and our reader walks the tree in
// strictly increasing collation order. ntfsls itself lists index blocks in
// allocation order, not collation order, even on a volume ntfs-3g made.
func checkVolume(t *testing.T, img string, dirs []string) {
	t.Helper()
	out := run(t, "ntfsfix", "-n", img)
	if !strings.Contains(out, "processed successfully") {
		t.Fatalf("ntfsfix -n:\n%s", out)
	}
	listed := map[string][]string{}
	for _, d := range dirs {
		listed[d] = ntfslsNames(t, img, d)
	}
	withMount(t, img, "ro", func(mnt string) {
		for _, d := range dirs {
			for _, n := range listed[d] {
				p := filepath.Join(mnt, strings.ReplaceAll(d, `\`, "/"), n)
				if _, err := os.Lstat(p); err != nil {
					t.Errorf("ntfs-3g cannot look up %s listed by ntfsls: %v", p, err)
				}
			}
		}
	})
	v := openVolumeFile(t, img)
	for _, d := range dirs {
		f, _, err := v.Lookup(d)
		if err != nil {
			t.Fatal(err)
		}
		es, err := v.IndexEntries(f)
		if err != nil {
			t.Fatalf("our reader: %s: %v", d, err)
		}
		for i := 1; i < len(es); i++ {
			if v.compareNames(es[i-1].Key.name16, es[i].Key.name16) >= 0 {
				t.Fatalf("%s: index walk gives %q before %q", d, es[i-1].Key.Name, es[i].Key.Name)
			}
		}
		if n := len(listed[d]); n != countNonDOS(es) {
			t.Errorf("%s: ntfsls lists %d names, the index holds %d", d, n, countNonDOS(es))
		}
	}
}

func countNonDOS(es []IndexEntry) int {
	n := 0
	for _, e := range es {
		if e.Key.Namespace != NamespaceDOS && e.Key.Name != "." {
			n++
		}
	}
	return n
}

// ntfslsNames lists a directory with ntfsls (all namespaces but DOS, in the
// order ntfs-3g walks the index), without . and ..
func ntfslsNames(t *testing.T, img, dir string) []string {
	t.Helper()
	out := run(t, "ntfsls", "-a", "-s", "-p", strings.ReplaceAll(dir, `\`, "/"), img)
	var names []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" && l != "." && l != ".." {
			names = append(names, l)
		}
	}
	return names
}

// readBack reads path through our reader on img.
func readBack(t *testing.T, img, path string) []byte {
	t.Helper()
	v := openVolumeFile(t, img)
	s, err := v.OpenStream(path)
	if err != nil {
		t.Fatalf("our reader: %s: %v", path, err)
	}
	b := make([]byte, s.Size())
	if _, err := s.ReadAt(b, 0); err != nil && len(b) > 0 {
		t.Fatalf("our reader: %s: %v", path, err)
	}
	return b
}

var (
	ntfsinfoNamespace = regexp.MustCompile(`Namespace:\s+(.+)`)
	ntfsinfoParent    = regexp.MustCompile(`Parent directory:\s+(\d+)`)
)

// checkNtfsinfo checks the $FILE_NAME ntfsinfo -F prints for a created file.
func checkNtfsinfo(t *testing.T, img string, c Created, parent uint64) {
	t.Helper()
	p := strings.ReplaceAll(c.Path, `\`, "/")
	out := run(t, "ntfsinfo", "-F", p, img)
	ns := ntfsinfoNamespace.FindStringSubmatch(out)
	want := map[uint8]string{NamespacePOSIX: "POSIX", NamespaceWin32DOS: "Win32 & DOS"}[c.Namespace]
	if ns == nil || strings.TrimSpace(ns[1]) != want {
		t.Errorf("ntfsinfo %s: namespace %v, want %q", p, ns, want)
	}
	if m := ntfsinfoParent.FindStringSubmatch(out); m == nil || m[1] != strconv.FormatUint(parent, 10) {
		t.Errorf("ntfsinfo %s: parent %v, want %d", p, m, parent)
	}
	if c.Size > 0 {
		s := ntfsinfoData(t, img, p)
		cs := int64(0)
		for _, r := range c.Runs {
			cs += r.Length
		}
		if s.data != c.Size || s.init != c.Size || s.alloc == 0 || s.alloc%cs != 0 && s.alloc < c.Size {
			t.Errorf("ntfsinfo %s: sizes %+v for a %d-byte file", p, s, c.Size)
		}
	}
}

// checkSleuthKit lists img with fls and checks every created file is
// there, then reads each one's record with istat: name, sequence number,
// parent and size must be what the plan says.
func checkSleuthKit(t *testing.T, img string, created []Created) {
	t.Helper()
	if _, err := exec.LookPath("fls"); err != nil {
		if testutil.InCI() {
			t.Fatal("fls (sleuthkit) missing")
		}
		t.Log("fls not installed; skipping The Sleuth Kit check")
		return
	}
	out := run(t, "fls", "-r", "-p", img)
	if strings.Contains(out, "(realloc)") {
		t.Errorf("fls finds entries whose reference does not match their record's sequence number:\n%s", out)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, ":\t"); i >= 0 {
			listed[strings.ToUpper(l[i+2:])] = true
		}
	}
	for _, c := range created {
		k := strings.ToUpper(strings.TrimPrefix(strings.ReplaceAll(c.Path, `\`, "/"), "/"))
		if !listed[k] {
			t.Errorf("fls does not list %s", k)
		}
		st := run(t, "istat", img, strconv.FormatUint(c.Record, 10))
		name := c.Path[strings.LastIndex(c.Path, `\`)+1:]
		for _, want := range []string{
			fmt.Sprintf("Entry: %d        Sequence: %d", c.Record, c.Sequence),
			"Name: " + name + "\n",
			fmt.Sprintf("Parent MFT Entry: %d \t", c.Parent),
			fmt.Sprintf("Actual Size: %d\n", c.Size),
		} {
			if !strings.Contains(st, want) {
				t.Errorf("istat %d (%s) lacks %q:\n%s", c.Record, c.Path, want, st)
			}
		}
	}
	run(t, "fsstat", img)
}

func TestPlanCreateDrivers(t *testing.T) {
	createTools(t)
	img := buildCreateImage(t, 4096, 64, xpLikeTree(t, 300))
	files := []NewFile{
		{Dir: `\WINDOWS\system32\drivers`, Name: "intelide.sys", Content: randomBytes(11, 5504)},
		{Dir: `\WINDOWS\system32\drivers`, Name: "pciide.sys", Content: randomBytes(12, 3328)},
		{Dir: `\WINDOWS\system32\drivers`, Name: "pciidex.sys", Content: randomBytes(13, 24960)},
		{Dir: `\WINDOWS\system32\drivers`, Name: "A long name, not 8.3.sys", Content: randomBytes(14, 70000)},
		{Dir: `\`, Name: "NEWROOT.TXT", Content: randomBytes(15, 100)},
		{Dir: `\small`, Name: "three.txt", Content: []byte("three")},
		{Dir: `\small`, Name: "empty", Content: nil},
	}
	cp, created := planAndApply(t, img, files)
	srcTree := treeHashes(t, img)
	cpTree := treeHashes(t, cp)
	for i, f := range files {
		p := "/" + strings.TrimPrefix(strings.ReplaceAll(f.Dir, `\`, "/")+"/"+f.Name, "/")
		p = strings.ReplaceAll(p, "//", "/")
		withMount(t, cp, "ro", func(mnt string) {
			got, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil {
				t.Fatalf("ntfs-3g: %v", err)
			}
			if !bytes.Equal(got, f.Content) {
				t.Errorf("ntfs-3g reads %s with %d bytes, want %d (equal %v)", p, len(got), len(f.Content), bytes.Equal(got, f.Content))
			}
		})
		if got := readBack(t, cp, p); !bytes.Equal(got, f.Content) {
			t.Errorf("our reader reads %s differently", p)
		}
		if _, ok := cpTree[p]; !ok {
			t.Errorf("ntfs-3g walk misses %s", p)
		}
		delete(cpTree, p)
		v := openVolumeFile(t, img)
		d, _, err := v.Lookup(f.Dir)
		if err != nil {
			t.Fatal(err)
		}
		checkNtfsinfo(t, cp, created[i], d.Number())
	}
	if len(cpTree) != len(srcTree) {
		t.Errorf("copy holds %d other files, source %d", len(cpTree), len(srcTree))
	}
	for p, h := range srcTree {
		if cpTree[p] != h {
			t.Errorf("%s reads back differently after creation", p)
		}
	}
	if created[0].Namespace != NamespaceWin32DOS || created[3].Namespace != NamespacePOSIX {
		t.Errorf("namespaces %d, %d; want 3 for intelide.sys, 0 for a long name", created[0].Namespace, created[3].Namespace)
	}
	checkVolume(t, cp, []string{`\WINDOWS\system32\drivers`, `\`, `\small`})
	names := ntfslsNames(t, cp, `\WINDOWS\system32\drivers`)
	if len(names) != 304 {
		t.Errorf("ntfsls lists %d names in drivers, want 304", len(names))
	}
	checkSleuthKit(t, cp, created)
	ntfs3gStillWrites(t, cp, "WINDOWS/system32/drivers", "intelide.sys", "A long name, not 8.3.sys")
}

func TestPlanCreateRefuses(t *testing.T) {
	createTools(t)
	img := buildCreateImage(t, 4096, 32, func(mnt string) {
		writeFile(t, mnt, "dir/atapi.sys", []byte("old"))
		writeFile(t, mnt, "dir/Long File Name.txt", []byte("old"))
		if err := os.Mkdir(filepath.Join(mnt, "packed"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setxattr(filepath.Join(mnt, "packed"), "system.ntfs_attrib_be", ntfsAttribCompressed, 0); err != nil {
			t.Fatal(err)
		}
	})
	v := openVolumeFile(t, img)
	cases := []struct {
		f    []NewFile
		want error
	}{
		{[]NewFile{{Dir: "dir", Name: "ATAPI.SYS", Content: []byte("new")}}, ErrExists},
		{[]NewFile{{Dir: "dir", Name: "long file name.TXT"}}, ErrExists},
		{[]NewFile{{Dir: "dir", Name: "x.sys"}, {Dir: "dir", Name: "X.SYS"}}, ErrExists},
		{[]NewFile{{Dir: "dir", Name: "a:b"}}, ErrBadName},
		{[]NewFile{{Dir: "dir", Name: "trailing."}}, ErrBadName},
		{[]NewFile{{Dir: "dir", Name: strings.Repeat("n", 256)}}, ErrBadName},
		{[]NewFile{{Dir: "nodir", Name: "x"}}, ErrNotFound},
		{[]NewFile{{Dir: "dir/atapi.sys", Name: "x"}}, ErrNotDirectory},
		{[]NewFile{{Dir: "$Extend", Name: "x"}}, ErrNotPlannable},
		{[]NewFile{{Dir: "dir", Name: "big", Content: make([]byte, 40<<20)}}, ErrNoSpace},
		{[]NewFile{{Dir: "packed", Name: "x.sys", Content: []byte("x")}}, ErrCompressDir},
	}
	for _, c := range cases {
		_, _, err := v.PlanCreate(c.f, CreateOptions{Now: createClock})
		if !errors.Is(err, c.want) {
			t.Errorf("%+v: err %v, want %v", c.f[len(c.f)-1].Name, err, c.want)
		}
	}

	// A hibernated volume is refused unless overridden.
	withMount(t, img, "", func(mnt string) { writeFile(t, mnt, "hiberfil.sys", []byte("hibr and more")) })
	v = openVolumeFile(t, img)
	nf := []NewFile{{Dir: "dir", Name: "new.sys", Content: []byte("x")}}
	if _, _, err := v.PlanCreate(nf, CreateOptions{Now: createClock}); !errors.Is(err, ErrUnsafeVolume) {
		t.Errorf("hibernated volume: err %v, want ErrUnsafeVolume", err)
	}
	if _, _, err := v.PlanCreate(nf, CreateOptions{Now: createClock, AllowUnsafeVolume: true}); err != nil {
		t.Errorf("hibernated volume with override: %v", err)
	}
	if _, _, err := v.PlanCreate(nf, CreateOptions{}); err == nil {
		t.Error("a plan without a clock was accepted")
	}
}

// TestWithWritesComposes plans one creation, reopens the volume over the
// source plus the planned writes and plans a second one there, then checks
// the two plans applied together with ntfs-3g: no cluster or record is
// used twice.
func TestWithWritesComposes(t *testing.T) {
	createTools(t)
	img := buildCreateImage(t, 4096, 32, xpLikeTree(t, 40))
	v := openVolumeFile(t, img)
	first := []NewFile{{Dir: `\WINDOWS\system32\drivers`, Name: "atapi.sys", Content: randomBytes(21, 90000)}}
	ws1, c1, err := v.PlanCreate(first, CreateOptions{Now: createClock})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base, err := disk.OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	over, err := disk.WithWrites(base, ws1)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Open(over, over.Size())
	if err != nil {
		t.Fatal(err)
	}
	second := []NewFile{{Dir: `\WINDOWS\system32\drivers`, Name: "pciidex.sys", Content: randomBytes(22, 50000)}}
	ws2, c2, err := v2.PlanCreate(second, CreateOptions{Now: createClock})
	if err != nil {
		t.Fatal(err)
	}
	if c1[0].Record == c2[0].Record || c1[0].Runs[0].LCN == c2[0].Runs[0].LCN {
		t.Fatalf("second plan reuses the first's record or clusters: %+v %+v", c1[0], c2[0])
	}
	cp := applyToCopy(t, img, append(ws1, ws2...), v.SectorSize)
	checkVolume(t, cp, []string{`\WINDOWS\system32\drivers`})
	for _, nf := range append(first, second...) {
		p := "/WINDOWS/system32/drivers/" + nf.Name
		if got := readBack(t, cp, p); !bytes.Equal(got, nf.Content) {
			t.Errorf("%s reads back differently", p)
		}
		withMount(t, cp, "ro", func(mnt string) {
			got, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil || !bytes.Equal(got, nf.Content) {
				t.Errorf("ntfs-3g reads %s: %v, equal %v", p, err, bytes.Equal(got, nf.Content))
			}
		})
	}
}

// utf16Of is for tests that build names.
func utf16Of(s string) []uint16 { return utf16.Encode([]rune(s)) }

var ntfsinfoSecurityID = regexp.MustCompile(`Security ID:\s+(\d+)`)

// TestPlanCreateOnWindowsVolume creates files on the corpus volume Windows
// formatted and filled (72-byte $STANDARD_INFORMATION with $Secure ids,
// its own index layout): a new file takes its sibling's security id, and
// ntfs-3g, ntfsfix and The Sleuth Kit accept the result.
func TestPlanCreateOnWindowsVolume(t *testing.T) {
	createTools(t)
	corpus := testutil.CorpusFile(t, "disk-mbr-ntfs-win-32M.raw")
	src, err := os.Open(corpus)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := partition.Read(src, fi.Size())
	if err != nil || len(tab.Partitions) == 0 {
		t.Fatalf("partition.Read: %v", err)
	}
	part := tab.Partitions[0]
	img := filepath.Join(t.TempDir(), "win.img")
	out, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(src, part.Start, part.Size)); err != nil {
		t.Fatal(err)
	}
	out.Close()

	v := openVolumeFile(t, img)
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	files := []NewFile{
		{Dir: `\test_dir`, Name: "intelide.sys", Content: randomBytes(31, 5504)},
		{Dir: `\test_dir`, Name: "a name Windows 8 keeps in POSIX.txt", Content: randomBytes(32, 40000)},
		{Dir: `\`, Name: "pciide.sys", Content: randomBytes(33, 3328)},
	}
	before := testutil.FileSHA256(t, img)
	ws, created, err := v.PlanCreate(files, CreateOptions{Now: createClock, AllowUnsafeVolume: !st.Safe()})
	if err != nil {
		t.Fatalf("PlanCreate: %v", err)
	}
	checkNoOverlap(t, ws)
	cp := applyToCopy(t, img, ws, v.SectorSize)
	if testutil.FileSHA256(t, img) != before {
		t.Fatal("source changed")
	}
	checkAllocated(t, cp, created)
	checkVolume(t, cp, []string{`\test_dir`, `\`})
	sibOut := run(t, "ntfsinfo", "-F", "/test_dir/111111111111111.txt", cp)
	newOut := run(t, "ntfsinfo", "-F", "/test_dir/intelide.sys", cp)
	sibID, newID := ntfsinfoSecurityID.FindStringSubmatch(sibOut), ntfsinfoSecurityID.FindStringSubmatch(newOut)
	if sibID == nil || newID == nil || sibID[1] != newID[1] || newID[1] == "0" {
		t.Errorf("security id %v, sibling's %v", newID, sibID)
	}
	if strconv.FormatUint(uint64(created[0].SecurityID), 10) != newID[1] {
		t.Errorf("Created says security id %d, ntfsinfo %s", created[0].SecurityID, newID[1])
	}
	srcTree, cpTree := treeHashes(t, img), treeHashes(t, cp)
	for _, f := range files {
		p := "/" + strings.TrimPrefix(pathOf(f), "/")
		if h := cpTree[p]; h != sha256Sum(f.Content) {
			t.Errorf("ntfs-3g reads %s differently", p)
		}
		delete(cpTree, p)
	}
	if len(cpTree) != len(srcTree) {
		t.Errorf("copy holds %d other files, source %d", len(cpTree), len(srcTree))
	}
	for p, h := range srcTree {
		if cpTree[p] != h {
			t.Errorf("%s changed", p)
		}
	}
	checkSleuthKit(t, cp, created)
	ntfs3gStillWrites(t, cp, "test_dir", "intelide.sys")
}

// TestCreateThenRewriteHive is the MergeIDE sequence: plan the drivers,
// reopen the volume over the source plus those writes, plan a SYSTEM hive
// rewrite that grows the hive (so it takes clusters from $Bitmap) there,
// and apply both plans: ntfs-3g reads the drivers and the new hive, and no
// cluster went to two files.
func TestCreateThenRewriteHive(t *testing.T) {
	createTools(t)
	const hive = "/WINDOWS/system32/config/SYSTEM"
	img := buildCreateImage(t, 4096, 64, xpLikeTree(t, 100))
	base, err := disk.OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	v, err := Open(base, base.Size())
	if err != nil {
		t.Fatal(err)
	}
	drivers := mergeIDEDrivers()
	ws1, created, err := v.PlanCreate(drivers, CreateOptions{Now: createClock})
	if err != nil {
		t.Fatal(err)
	}
	over, err := disk.WithWrites(base, ws1)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Open(over, over.Size())
	if err != nil {
		t.Fatal(err)
	}
	newHive := randomBytes(77, 300000+200000)
	ws2, err := v2.PlanRewrite(hive, newHive, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]disk.Write(nil), ws1...), ws2...)
	cp := applyToCopy(t, img, all, v.SectorSize)
	checkAllocated(t, cp, created)
	checkVolume(t, cp, []string{`\WINDOWS\system32\drivers`, `\WINDOWS\system32\config`})
	hiveRuns := ntfsclusterRuns(t, cp, hive)
	for _, c := range created {
		for _, r := range c.Runs {
			for _, h := range hiveRuns {
				if r.LCN < h.LCN+h.Length && h.LCN < r.LCN+r.Length {
					t.Errorf("%s's clusters %d+%d overlap the hive's %d+%d", c.Path, r.LCN, r.Length, h.LCN, h.Length)
				}
			}
		}
	}
	withMount(t, cp, "ro", func(mnt string) {
		for _, nf := range append(drivers, NewFile{Dir: `\WINDOWS\system32\config`, Name: "SYSTEM", Content: newHive}) {
			got, err := os.ReadFile(filepath.Join(mnt, pathOf(nf)))
			if err != nil || !bytes.Equal(got, nf.Content) {
				t.Errorf("ntfs-3g reads %s: %v (equal %v)", pathOf(nf), err, bytes.Equal(got, nf.Content))
			}
		}
	})
}
