package ntfs

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/partition"
)

// The test images are built once per test binary by
// scripts/mkimages/mkntfs-images.sh into a temporary directory that
// TestMain removes.
var (
	imagesOnce sync.Once
	imagesDir  string
	imagesErr  error
	imagesOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imagesDir != "" {
		os.RemoveAll(imagesDir)
	}
	os.Exit(code)
}

// testImages returns the directory holding the built images, skipping (or
// failing under CI) when the tools are missing.
func testImages(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"mkntfs", "ntfs-3g", "sfdisk", "ntfsls", "ntfscat"} {
		testutil.RequireTool(t, tool)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if testutil.InCI() {
			t.Fatal("/dev/fuse missing: ntfs-3g cannot populate the test images")
		}
		t.Skip("/dev/fuse missing: ntfs-3g cannot populate the test images")
	}
	imagesOnce.Do(func() {
		imagesDir, imagesErr = os.MkdirTemp("", "kvmify-ntfs-images-")
		if imagesErr != nil {
			return
		}
		args := []string{filepath.Join(testutil.RepoRoot(), "scripts", "mkimages", "mkntfs-images.sh"), imagesDir}
		corpus := filepath.Join(testutil.RepoRoot(), "..", "shared", "corpus", "disk-mbr-ntfs-win-32M.raw")
		if d := os.Getenv("KVMIFY_CORPUS"); d != "" {
			corpus = filepath.Join(d, "disk-mbr-ntfs-win-32M.raw")
		}
		if _, err := os.Stat(corpus); err == nil {
			args = append(args, corpus)
		}
		imagesOut, imagesErr = exec.Command("bash", args...).CombinedOutput()
	})
	if imagesErr != nil {
		t.Fatalf("building test images: %v\n%s", imagesErr, imagesOut)
	}
	return imagesDir
}

// testImage describes one built image.
type testImage struct {
	name        string
	clusterSize int64
	scheme      partition.Scheme
}

var allImages = []testImage{
	{"bare-4k.img", 4096, partition.SchemeNone},
	{"bare-512.img", 512, partition.SchemeNone},
	{"bare-64k.img", 65536, partition.SchemeNone},
	{"mbr-logical.img", 4096, partition.SchemeMBR},
	{"gpt.img", 4096, partition.SchemeGPT},
	{"win-copy.img", 2048, partition.SchemeMBR},
	{"frag-mft.img", 512, partition.SchemeNone},
}

// openedImage is an image's NTFS volume plus a standalone copy of the
// partition for the ntfs-3g tools, which cannot take an offset.
type openedImage struct {
	vol      *Volume
	partFile string
	file     *os.File
}

func openImage(t testing.TB, img testImage) *openedImage {
	t.Helper()
	dir := testImages(t)
	path := filepath.Join(dir, img.name)
	f, err := os.Open(path)
	if os.IsNotExist(err) && img.name == "win-copy.img" {
		t.Skip("corpus disk not available")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	tab, err := partition.Read(f, fi.Size())
	if err != nil {
		t.Fatalf("%s: partition.Read: %v", img.name, err)
	}
	if tab.Scheme != img.scheme {
		t.Fatalf("%s: scheme %v, want %v", img.name, tab.Scheme, img.scheme)
	}
	var part *partition.Partition
	for i := range tab.Partitions {
		if tab.Scheme == partition.SchemeNone || tab.Partitions[i].MayHoldNTFS() {
			part = &tab.Partitions[i]
			break
		}
	}
	if part == nil {
		t.Fatalf("%s: no NTFS partition in %+v", img.name, tab)
	}
	sec := part.Section(f)
	vol, err := Open(sec, part.Size)
	if err != nil {
		t.Fatalf("%s: Open: %v", img.name, err)
	}
	if vol.ClusterSize != img.clusterSize {
		t.Errorf("%s: cluster size %d, want %d", img.name, vol.ClusterSize, img.clusterSize)
	}
	o := &openedImage{vol: vol, file: f, partFile: path}
	if part.Start != 0 {
		o.partFile = filepath.Join(dir, img.name+".part")
		if _, err := os.Stat(o.partFile); err != nil {
			out, err := os.Create(o.partFile + ".tmp")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, io.NewSectionReader(f, part.Start, part.Size)); err != nil {
				t.Fatal(err)
			}
			out.Close()
			os.Rename(o.partFile+".tmp", o.partFile)
		}
	}
	return o
}
