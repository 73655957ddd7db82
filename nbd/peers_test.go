package nbd

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

const peerImageSize = 16 << 20

func unixURI(sock string) string { return "nbd+unix:///?socket=" + sock }

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

type nbdinfoExport struct {
	Name       string `json:"export-name"`
	Size       int64  `json:"export-size"`
	ReadOnly   bool   `json:"is_read_only"`
	CanFlush   bool   `json:"can_flush"`
	CanFUA     bool   `json:"can_fua"`
	CanTrim    bool   `json:"can_trim"`
	CanZero    bool   `json:"can_zero"`
	CanCache   bool   `json:"can_cache"`
	MultiConn  bool   `json:"can_multi_conn"`
	BlockMin   int64  `json:"block_size_minimum"`
	BlockPref  int64  `json:"block_size_preferred"`
	BlockMax   int64  `json:"block_size_maximum"`
	Descripton string `json:"description"`
}

func nbdinfoJSON(t *testing.T, uri string, extra ...string) nbdinfoExport {
	t.Helper()
	out := run(t, testutil.RequireTool(t, "nbdinfo"), append(extra, "--json", uri)...)
	var v struct {
		Exports []nbdinfoExport `json:"exports"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("nbdinfo json: %v\n%s", err, out)
	}
	if len(v.Exports) != 1 {
		t.Fatalf("nbdinfo: %d exports, want 1\n%s", len(v.Exports), out)
	}
	return v.Exports[0]
}

func TestNbdinfoWritableExport(t *testing.T) {
	img := makeImage(t, "w.img", peerImageSize, 1)
	sock := startServer(t, oneExport(openFileDisk(t, img), false))
	e := nbdinfoJSON(t, unixURI(sock))
	if e.Size != peerImageSize || e.ReadOnly || !e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero || !e.CanCache || !e.MultiConn {
		t.Errorf("nbdinfo reports %+v; want size %d, writable, flush/fua/trim/zero/cache/multi-conn", e, peerImageSize)
	}
	if e.BlockMin != MinBlockSize || e.BlockPref != PreferredBlockSize || e.BlockMax != MaxBlockSize {
		t.Errorf("block sizes %d/%d/%d, want %d/%d/%d", e.BlockMin, e.BlockPref, e.BlockMax, MinBlockSize, PreferredBlockSize, MaxBlockSize)
	}
	if e.Descripton != "test disk" {
		t.Errorf("description %q", e.Descripton)
	}
}

func TestNbdinfoReadOnly(t *testing.T) {
	img := makeImage(t, "ro.img", peerImageSize, 2)
	src, err := disk.OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rw := openFileDisk(t, img)
	for _, tc := range []struct {
		name string
		b    disk.Reader
		ro   bool
	}{{"source", src, false}, {"flag", rw, true}} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startServer(t, oneExport(tc.b, tc.ro))
			e := nbdinfoJSON(t, unixURI(sock))
			if !e.ReadOnly || e.CanTrim || e.CanZero || e.Size != peerImageSize || !e.MultiConn {
				t.Errorf("nbdinfo reports %+v; want read-only, no trim/zero, size %d, multi-conn", e, peerImageSize)
			}
		})
	}
}

func TestNbdinfoListAndNames(t *testing.T) {
	a := makeImage(t, "a.img", 1<<20, 3)
	b := makeImage(t, "b.img", 2<<20, 4)
	srv := &Server{Exports: map[string]Export{
		"alpha": {Name: "alpha", Description: "first", Backend: openFileDisk(t, a)},
		"beta":  {Name: "beta", Description: "second", Backend: openFileDisk(t, b), ReadOnly: true},
	}}
	sock := startServer(t, srv)
	out := string(run(t, testutil.RequireTool(t, "nbdinfo"), "--list", unixURI(sock)))
	for _, want := range []string{"alpha", "beta", "first", "second"} {
		if !strings.Contains(out, want) {
			t.Errorf("nbdinfo --list lacks %q:\n%s", want, out)
		}
	}
	e := nbdinfoJSON(t, "nbd+unix:///beta?socket="+sock)
	if e.Size != 2<<20 || !e.ReadOnly {
		t.Errorf("beta: %+v", e)
	}
	cmd := exec.Command("nbdinfo", "nbd+unix:///gamma?socket="+sock)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("nbdinfo on unknown export succeeded:\n%s", out)
	}
}

func TestQemuImgConvertEqualsSource(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	img := makeImage(t, "src.img", peerImageSize, 5)
	src, err := disk.OpenSource(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sock := startServer(t, oneExport(src, false))
	out := filepath.Join(t.TempDir(), "out.raw")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", unixURI(sock), out)
	if a, b := testutil.FileSHA256(t, img), testutil.FileSHA256(t, out); a != b {
		t.Fatalf("qemu-img convert output sha256 %s, source %s", b, a)
	}
}

func TestQemuIOWriteReadDiscardZero(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	img := makeImage(t, "io.img", peerImageSize, 6)
	sock := startServer(t, oneExport(openFileDisk(t, img), false))
	out := string(run(t, qemuIO, "-f", "raw",
		"-c", "write -P 0xab 1M 192k",
		"-c", "write -P 0xcd -f 3M 4k", // FUA
		"-c", "flush",
		"-c", "read -P 0xab 1M 192k",
		"-c", "read -P 0xcd 3M 4k",
		"-c", "discard 1M 64k",
		"-c", "read -P 0 1M 64k",
		"-c", "read -P 0xab 1088k 128k",
		"-c", "write -z 5M 1M",
		"-c", "read -P 0 5M 1M",
		"-c", "write -z -u 7M 64k",
		"-c", "read -P 0 7M 64k",
		unixURI(sock)))
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	// The same answers must be on the backing file itself.
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	orig := patternBytes(6, peerImageSize)
	checkRange := func(off, n int, want func(i int) byte) {
		t.Helper()
		for i := off; i < off+n; i++ {
			if data[i] != want(i) {
				t.Fatalf("byte %#x is %#x, want %#x", i, data[i], want(i))
			}
		}
	}
	const mib = 1 << 20
	checkRange(0, mib, func(i int) byte { return orig[i] })
	checkRange(mib, 64<<10, func(int) byte { return 0 })
	checkRange(mib+64<<10, 128<<10, func(int) byte { return 0xab })
	checkRange(mib+192<<10, mib, func(i int) byte { return orig[i] })
	checkRange(3*mib, 4096, func(int) byte { return 0xcd })
	checkRange(5*mib, mib, func(int) byte { return 0 })
	checkRange(6*mib, mib, func(i int) byte { return orig[i] })
}

func TestNbdcopyBothDirections(t *testing.T) {
	nbdcopy := testutil.RequireTool(t, "nbdcopy")
	src := makeImage(t, "in.img", peerImageSize, 7)
	target := makeImage(t, "target.img", peerImageSize, 8)
	srcSum := testutil.FileSHA256(t, src)
	sock := startServer(t, oneExport(openFileDisk(t, target), false))
	run(t, nbdcopy, src, unixURI(sock))
	if got := testutil.FileSHA256(t, target); got != srcSum {
		t.Fatalf("after nbdcopy into the export, backing sha256 %s, want %s", got, srcSum)
	}
	back := filepath.Join(t.TempDir(), "back.img")
	run(t, nbdcopy, unixURI(sock), back)
	if got := testutil.FileSHA256(t, back); got != srcSum {
		t.Fatalf("nbdcopy out of the export: sha256 %s, want %s", got, srcSum)
	}
	if got := testutil.FileSHA256(t, src); got != srcSum {
		t.Fatalf("nbdcopy's source changed")
	}
}
