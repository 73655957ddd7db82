package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/ntfs"
)

// TestNTFSCLI builds the GPT and MBR-logical test images with
// scripts/mkimages (mkntfs + ntfs-3g) once, into its temp dir, and runs the
// ls and cat checks against them.
func TestNTFSCLI(t *testing.T) {
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk", "ntfsls", "ntfscat"} {
		testutil.RequireTool(t, tool)
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(testutil.RepoRoot(), "scripts", "mkimages", "mkntfs-images.sh"), dir)
	cmd.Env = append(os.Environ(), "MKIMAGES_ONLY=gpt.img mbr-logical.img")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building NTFS test images: %v\n%s", err, out)
	}
	t.Run("LsMatchesNtfsls", func(t *testing.T) { testLsMatchesNtfsls(t, dir) })
	t.Run("LsLongShowsRuns", func(t *testing.T) { testLsLongShowsRuns(t, dir) })
	t.Run("LsCatErrors", func(t *testing.T) { testLsCatErrors(t, dir) })
	t.Run("ExitCodes", func(t *testing.T) { testLsCatExitCodes(t, dir) })
	t.Run("CatMatchesNtfscat", func(t *testing.T) { testCatMatchesNtfscat(t, dir) })
	t.Run("NonNTFSPartitions", func(t *testing.T) { testNonNTFSPartitions(t, dir) })
	t.Run("CatMFTIsOnDisk", func(t *testing.T) { testCatMFTIsOnDisk(t, dir) })
}

// testCatMFTIsOnDisk pins what "cat /$MFT" returns (its --help says so):
// the on-disk bytes, update sequence numbers in place, which differ from
// ntfscat's fixed-up copy exactly at the sector ends of in-use records.
func testCatMFTIsOnDisk(t *testing.T, dir string) {
	img := cliImages[0]
	image := filepath.Join(dir, img.name)
	part := partitionCopy(t, image, img.start, img.size)
	var ours bytes.Buffer
	if err := runCat(t.Context(), catOptions{}, []string{image, "/$MFT"}, &ours); err != nil {
		t.Fatal(err)
	}
	theirs, err := exec.Command("ntfscat", part, "$MFT").Output()
	if err != nil {
		t.Fatalf("ntfscat $MFT: %v", err)
	}
	if ours.Len() != len(theirs) {
		t.Fatalf("cat /$MFT: %d bytes, ntfscat %d", ours.Len(), len(theirs))
	}
	// Record 0 as stored: the boot sector's $MFT cluster, read directly.
	raw := make([]byte, 1024)
	f, err := os.Open(part)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	boot := make([]byte, 512)
	if _, err := f.ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	cluster := int64(binary.LittleEndian.Uint16(boot[11:])) * int64(boot[13])
	if _, err := f.ReadAt(raw, int64(binary.LittleEndian.Uint64(boot[48:]))*cluster); err != nil {
		t.Fatal(err)
	}
	o := ours.Bytes()
	if !bytes.Equal(o[:1024], raw) {
		t.Error("record 0 of cat /$MFT differs from the bytes on disk")
	}
	usn := o[48:50] // update sequence number, at the header's usual place
	for _, end := range []int{510, 1022} {
		if !bytes.Equal(o[end:end+2], usn) {
			t.Errorf("our record 0 at byte %d: % x, want the update sequence number % x", end, o[end:end+2], usn)
		}
		if bytes.Equal(theirs[end:end+2], usn) && !bytes.Equal(o[:end], theirs[:end]) {
			t.Errorf("ntfscat's record 0 at byte %d is not fixed up", end)
		}
	}
	diff := 0
	for i := range o {
		if o[i] != theirs[i] {
			if i%512 < 510 {
				t.Fatalf("cat /$MFT differs from ntfscat at byte %d, not at a sector end", i)
			}
			diff++
		}
	}
	if diff == 0 {
		t.Error("cat /$MFT equals ntfscat's fixed-up copy; the --help text would be wrong")
	}
}

// testNonNTFSPartitions: a partition that is not NTFS gets no volume state
// in inspect --json (null, not an all-false state that reads as "clean"),
// and refusing it prints no raw NUL bytes (its zeroed OEM ID is quoted).
func testNonNTFSPartitions(t *testing.T, dir string) {
	var buf bytes.Buffer
	if err := runInspect(t.Context(), inspectOptions{JSON: true}, []string{filepath.Join(dir, "mbr-logical.img")}, &buf); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Partitions []struct {
			Index       int              `json:"index"`
			NTFS        bool             `json:"ntfs"`
			VolumeState *json.RawMessage `json:"volume_state"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var ntfsSeen, otherSeen bool
	for _, p := range rep.Partitions {
		switch {
		case p.NTFS && p.VolumeState == nil:
			t.Errorf("NTFS partition %d has no volume_state", p.Index)
		case !p.NTFS && p.VolumeState != nil:
			t.Errorf("partition %d is not NTFS but has volume_state %s", p.Index, *p.VolumeState)
		}
		ntfsSeen = ntfsSeen || p.NTFS
		otherSeen = otherSeen || !p.NTFS
	}
	if !ntfsSeen || !otherSeen {
		t.Fatalf("mbr-logical.img should hold NTFS and non-NTFS partitions: %s", buf.String())
	}
	err := runLs(t.Context(), lsOptions{partition: 1}, []string{filepath.Join(dir, "gpt.img")}, io.Discard)
	if err == nil || strings.ContainsRune(err.Error(), 0) || !strings.Contains(err.Error(), `\x00`) {
		t.Errorf("ls on a zeroed partition: %q, want the OEM ID quoted without raw NULs", err)
	}
}

// partitionCopy extracts the NTFS partition for ntfs-3g tools, which take
// no offset.
func partitionCopy(t *testing.T, image string, start, size int64) string {
	t.Helper()
	in, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out := filepath.Join(t.TempDir(), "part.img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(in, start, size)); err != nil {
		t.Fatal(err)
	}
	return out
}

// cliImages are the disks the CLI tests use and where their NTFS lives.
var cliImages = []struct {
	name        string
	start, size int64
	partNum     int
}{
	{"gpt.img", 10240 * 512, 61440 * 512, 2},
}

func testLsMatchesNtfsls(t *testing.T, dir string) {
	for _, img := range cliImages {
		image := filepath.Join(dir, img.name)
		part := partitionCopy(t, image, img.start, img.size)
		for _, p := range []string{"", "/many", `\A\B\c\D\e\f\g\h\i\j\k\l`, "Ω-dir"} {
			var buf bytes.Buffer
			if err := runLs(t.Context(), lsOptions{json: true}, []string{image, p}, &buf); err != nil {
				t.Fatalf("ls %s %q: %v", img.name, p, err)
			}
			var got []lsEntry
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			oraclePath := "/" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(p, `\`, "/"), "/")), "ω", "Ω")
			out, err := exec.Command("ntfsls", "-a", "-s", "-l", "-i", "-p", oraclePath, part).Output()
			if err != nil {
				t.Fatalf("ntfsls -p %s: %v", oraclePath, err)
			}
			var want, ours []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				name := strings.Join(f[6:], " ")
				if name == "." || name == ".." {
					continue
				}
				want = append(want, f[0]+" "+f[1]+" "+name)
			}
			for _, e := range got {
				ours = append(ours, itoa64(int64(e.Record))+" "+itoa64(e.Size)+" "+e.Name)
			}
			sort.Strings(want)
			sort.Strings(ours)
			if strings.Join(want, "\n") != strings.Join(ours, "\n") {
				t.Errorf("ls %s %q:\nours:   %q\nntfsls: %q", img.name, p, ours, want)
			}
		}
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func testLsLongShowsRuns(t *testing.T, dir string) {
	var buf bytes.Buffer
	err := runLs(t.Context(), lsOptions{long: true}, []string{filepath.Join(dir, "mbr-logical.img"), "windows/system32/config/software"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"SOFTWARE", "$DATA", "lcn ", "$FILE_NAME"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls --long output lacks %q:\n%s", want, out)
		}
	}
}

func testLsCatErrors(t *testing.T, dir string) {
	image := filepath.Join(dir, "gpt.img")
	err := runCat(t.Context(), catOptions{}, []string{image, "no/such/file"}, io.Discard)
	if !errors.Is(err, ntfs.ErrNotFound) {
		t.Errorf("cat of a missing file: %v", err)
	}
	err = runCat(t.Context(), catOptions{}, []string{image, "Windows"}, io.Discard)
	if !errors.Is(err, ntfs.ErrIsDirectory) {
		t.Errorf("cat of a directory: %v", err)
	}
	// Partition 1 is the EFI system partition: not NTFS.
	err = runLs(t.Context(), lsOptions{partition: 1}, []string{image}, io.Discard)
	if !errors.Is(err, ntfs.ErrNotNTFS) {
		t.Errorf("ls on a non-NTFS partition: %v", err)
	}
	if err := runLs(t.Context(), lsOptions{partition: 9}, []string{image}, io.Discard); err == nil {
		t.Error("ls on a missing partition succeeded")
	}
	// A BitLocker OEM ID on the NTFS partition of a copy: the default
	// partition choice must still name BitLocker, not "no NTFS".
	img := cliImages[0]
	locked := partitionCopy(t, image, 0, img.start+img.size)
	f, err := os.OpenFile(locked, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("-FVE-FS-"), img.start+3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = runLs(t.Context(), lsOptions{}, []string{locked}, io.Discard)
	if !errors.Is(err, ntfs.ErrBitLocker) {
		t.Errorf("ls on a BitLocker volume: %v", err)
	}
}

// testLsCatExitCodes runs the built binary like a user.
func testLsCatExitCodes(t *testing.T, dir string) {
	bin := testutil.BuildKvmify(t)
	image := filepath.Join(dir, "gpt.img")
	sum := testutil.FileSHA256(t, image)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"ls", image}, 0},
		{[]string{"cat", image, "hello.txt"}, 0},
		{[]string{"cat", image}, 2},
		{[]string{"ls", image, "a", "b"}, 2},
		{[]string{"ls", "--bogus", image}, 2},
		{[]string{"cat", image, "missing"}, 1},
		{[]string{"ls", filepath.Join(dir, "nonexistent.img")}, 1},
	} {
		err := exec.Command(bin, c.args...).Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Errorf("kvmify %v: exit %d, want %d", c.args, code, c.code)
		}
	}
	if testutil.FileSHA256(t, image) != sum {
		t.Error("the image changed")
	}
}
