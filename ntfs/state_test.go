package ntfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// ntfsinfoMeta runs `ntfsinfo -m` and returns its "Key: value" lines.
func ntfsinfoMeta(t *testing.T, part string) map[string]string {
	t.Helper()
	out, err := exec.Command("ntfsinfo", "-f", "-m", part).Output()
	if err != nil {
		t.Fatalf("ntfsinfo -m %s: %v", part, err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestGeometryMatchesNtfsinfo checks the boot sector decoding and $Volume
// version/flags against ntfsinfo on every image.
func TestGeometryMatchesNtfsinfo(t *testing.T) {
	testutil.RequireTool(t, "ntfsinfo")
	for _, img := range allImages {
		t.Run(img.name, func(t *testing.T) {
			o := openImage(t, img)
			m := ntfsinfoMeta(t, o.partFile)
			st, err := o.vol.State()
			if err != nil {
				t.Fatal(err)
			}
			mftLCN := int64(-1)
			if len(o.vol.MFT().Runs) > 0 {
				mftLCN = o.vol.MFT().Runs[0].LCN
			}
			for key, ours := range map[string]string{
				"Sector Size":                        fmt.Sprint(o.vol.SectorSize),
				"Cluster Size":                       fmt.Sprint(o.vol.ClusterSize),
				"Index Block Size":                   fmt.Sprint(o.vol.IndexRecordSize),
				"MFT Record Size":                    fmt.Sprint(o.vol.RecordSize),
				"Volume Size in Clusters":            fmt.Sprint(o.vol.Clusters()),
				"LCN of Data Attribute for FILE_MFT": fmt.Sprint(mftLCN),
				"Volume Version":                     fmt.Sprintf("%d.%d", st.MajorVersion, st.MinorVersion),
				"Volume Flags":                       fmt.Sprintf("0x%04x", st.VolumeFlags),
			} {
				if m[key] != ours {
					t.Errorf("%s: ours %q, ntfsinfo %q", key, ours, m[key])
				}
			}
			if img.name != "mbr-logical.img" && !st.Safe() {
				t.Errorf("freshly unmounted volume reported unsafe: %+v", st)
			}
		})
	}
}

// TestStateDirtyFlag sets the dirty bit in $VOLUME_INFORMATION of a copy
// and expects both ntfsinfo and State to see it.
func TestStateDirtyFlag(t *testing.T) {
	testutil.RequireTool(t, "ntfsinfo")
	o := openImage(t, allImages[1])
	vol, err := o.vol.OpenRecord(RecordVolume)
	if err != nil {
		t.Fatal(err)
	}
	var vi *Attr
	for _, a := range vol.Attrs {
		if a.Type == AttrVolumeInformation {
			vi = a
		}
	}
	valueOff := int(le16(vol.Record.Raw[vi.RecordOffset+attrValueOffsetOff:]))
	inRecord := vi.RecordOffset + valueOff + viFlagsOff
	if inRecord%512 >= 510 {
		t.Skip("flags word sits under a fixup")
	}
	cp := filepath.Join(t.TempDir(), "dirty.img")
	copyFile(t, o.partFile, cp)
	f, err := os.OpenFile(cp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags := le16(vol.Record.Raw[inRecord:]) | VolumeFlagDirty
	if _, err := f.WriteAt([]byte{byte(flags), byte(flags >> 8)}, vol.Record.Extents[0].Offset+int64(inRecord)); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	v, err := Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !st.Dirty || st.Safe() {
		t.Errorf("dirty volume not reported: %+v", st)
	}
	// ntfsinfo either shows the flag or refuses the volume because of it.
	out, err := exec.Command("ntfsinfo", "-f", "-m", cp).CombinedOutput()
	if err == nil && !regexp.MustCompile(`Volume Flags: 0x0*1\b`).Match(out) {
		t.Errorf("ntfsinfo does not see the flag we set:\n%s", out)
	}
	if err != nil && !strings.Contains(strings.ToLower(string(out)), "dirty") && !strings.Contains(string(out), "chkdsk") {
		t.Errorf("ntfsinfo failed for another reason: %v\n%s", err, out)
	}
}

// TestStateCorpusWindowsDisk reads the untouched Windows-formatted corpus
// disk: its README records LFS version 1.1 and a clean volume.
func TestStateCorpusWindowsDisk(t *testing.T) {
	path := testutil.CorpusFile(t, "disk-mbr-ntfs-win-32M.raw")
	sum := testutil.FileSHA256(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const partStart = 128 * 512 // LBA 128, per the corpus README
	fi, _ := f.Stat()
	v, err := Open(io.NewSectionReader(f, partStart, fi.Size()-partStart), fi.Size()-partStart)
	if err != nil {
		t.Fatal(err)
	}
	if v.ClusterSize != 2048 {
		t.Errorf("cluster size %d, README says 2 KiB", v.ClusterSize)
	}
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.LogFileVersion != "1.1" || st.LogFileEmpty || !st.LogFileClean || st.Dirty || st.Hibernation != "" {
		t.Errorf("state %+v, want a clean volume with LFS 1.1", st)
	}
	if _, _, err := v.Lookup("test_dir"); err != nil {
		t.Errorf("README's test_dir: %v", err)
	}
	if testutil.FileSHA256(t, path) != sum {
		t.Error("corpus file changed")
	}
}

// TestStateHibernation finds the hiberfil.sys the image script plants on
// the MBR image.
func TestStateHibernation(t *testing.T) {
	o := openImage(t, allImages[3])
	st, err := o.vol.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.Hibernation != "HIBR" || st.Safe() {
		t.Errorf("hibernation not reported: %+v", st)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// TestStateLogFileVersion2 relabels the corpus disk's restart pages as LFS
// 2.0, the version Windows 8 and later write, in an in-memory copy.
func TestStateLogFileVersion2(t *testing.T) {
	path := testutil.CorpusFile(t, "disk-mbr-ntfs-win-32M.raw")
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	part := disk[128*512:]
	v, err := Open(bytes.NewReader(part), int64(len(part)))
	if err != nil {
		t.Fatal(err)
	}
	lf, err := v.OpenRecord(RecordLogFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := lf.Stream("")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := s.diskExtents(0, 2*4096)
	if err != nil {
		t.Fatal(err)
	}
	// Both restart pages (the first two 4 KiB log pages) get major 2, minor 0.
	for _, page := range []int64{0, 4096} {
		off := ex[0].Offset + page
		if len(ex) != 1 || string(part[off:off+4]) != rstrSignature {
			t.Skip("restart pages not where expected")
		}
		part[off+rstrMajorOff], part[off+rstrMajorOff+1] = 2, 0
		part[off+rstrMinorOff], part[off+rstrMinorOff+1] = 0, 0
	}
	v, err = Open(bytes.NewReader(part), int64(len(part)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.LogFileVersion != "2.0" {
		t.Errorf("LogFileVersion %q, want 2.0", st.LogFileVersion)
	}
}
