package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/export"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

// countingView counts the bytes read through it and passes Extents on.
type countingView struct {
	disk.Reader
	read atomic.Int64
}

func (c *countingView) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.Reader.ReadAt(p, off)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingView) Extents(off, n int64) ([]disk.Extent, error) {
	return c.Reader.(disk.Extenter).Extents(off, n)
}

// sparseView builds a huge sparse source holding data at a few scattered
// places (one straddling an L2 table's 512 MiB boundary, one at the very
// end, which is not cluster aligned) and an overlay over it with a write
// and a zeroed range; it returns the view and a raw reference file of it.
func sparseView(t *testing.T, size int64) (src string, ov *overlay.Overlay, ref string) {
	t.Helper()
	dir := t.TempDir()
	src = filepath.Join(dir, "src.img")
	ref = filepath.Join(dir, "ref.raw")
	pieces := map[int64][]byte{}
	for _, off := range []int64{0, 3 << 20, 512<<20 - 70000, size/2 + 12345, size - 100000} {
		b := make([]byte, 150000)
		rand.Read(b)
		pieces[off] = b
	}
	for _, p := range []string{src, ref} {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		for off, b := range pieces {
			if _, err := f.WriteAt(b[:min(int64(len(b)), size-off)], off); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	os.Chmod(src, 0o444)
	s, err := disk.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ov, err = overlay.Open(filepath.Join(dir, "ov"), s, overlay.Options{SourcePath: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ov.Close() })
	rf, err := os.OpenFile(ref, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	w := bytes.Repeat([]byte{0xC3}, 200000)
	for _, off := range []int64{5<<20 + 1, 512<<20 - 4096} {
		if _, err := ov.WriteAt(w, off); err != nil {
			t.Fatal(err)
		}
		rf.WriteAt(w, off)
	}
	if err := ov.Zero(3<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	rf.WriteAt(make([]byte, 64<<10), 3<<20)
	return src, ov, ref
}

func qemuCompare(t *testing.T, qemuImg, format, out, ref string) {
	t.Helper()
	if b, err := exec.Command(qemuImg, "compare", "-f", format, "-F", "raw", out, ref).CombinedOutput(); err != nil {
		t.Fatalf("%s export differs from the view: %v\n%s", format, err, b)
	}
}

func qemuCheck(t *testing.T, qemuImg, path string) {
	t.Helper()
	if b, err := exec.Command(qemuImg, "check", "-f", "qcow2", path).CombinedOutput(); err != nil || !strings.Contains(string(b), "No errors were found") {
		t.Fatalf("qemu-img check %s: %v\n%s", path, err, b)
	}
}

// TestExportSkipsHoles exports a 64 GiB sparse view with a few MiB of data:
// raw and qcow2 equal the view (qemu-img compare), qcow2 passes qemu-img
// check, and neither export reads more than the data runs the source and
// overlay extents report, rounded to clusters.
func TestExportSkipsHoles(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	const size = 64<<30 + 512
	// Hashing the 64 GiB source would read it all; the other tests check
	// sources by hash.
	_, ov, ref := sparseView(t, size)
	dir := t.TempDir()
	for _, format := range []string{"raw", "qcow2"} {
		v := &countingView{Reader: ov}
		out := filepath.Join(dir, "out."+format)
		var last int64
		progress := func(done, total int64) { last = done }
		var err error
		if format == "raw" {
			err = export.Raw(context.Background(), v, out, progress)
		} else {
			err = export.QCOW2(context.Background(), v, out, progress)
		}
		if err != nil {
			t.Fatal(err)
		}
		qemuCompare(t, qemuImg, format, out, ref)
		if format == "qcow2" {
			qemuCheck(t, qemuImg, out)
		}
		if read := v.read.Load(); read > 4<<20 {
			t.Errorf("%s export read %d bytes of a view holding about 1.5 MiB of data", format, read)
		}
		if last != size {
			t.Errorf("%s progress ended at %d, want %d", format, last, size)
		}
		var st syscall.Stat_t
		syscall.Stat(out, &st)
		t.Logf("%s: read %d bytes, %d allocated", format, v.read.Load(), st.Blocks*512)
		if st.Blocks*512 > 8<<20 {
			t.Errorf("%s export allocates %d bytes", format, st.Blocks*512)
		}
	}
}

// TestQCOW2BackedChecks exports only the overlay's changes over the source
// as backing file: qemu-img check finds no error or leak, and the image
// equals the view.
func TestQCOW2BackedChecks(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	// The source is checked by hash in TestQCOW2StandaloneAndBacked;
	// hashing this 1 GiB sparse one would read it all.
	src, ov, ref := sparseView(t, 1<<30+512)
	var ext []export.Extent
	for _, e := range ov.Changes() {
		ext = append(ext, export.Extent{Offset: e.Offset, Length: e.Length, Zero: e.Zero})
	}
	out := filepath.Join(t.TempDir(), "backed.qcow2")
	if err := export.QCOW2Backed(context.Background(), ov, src, ext, out, nil); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, qemuImg, out)
	qemuCompare(t, qemuImg, "qcow2", out, ref)
	info, err := exec.Command(qemuImg, "info", "--output=json", out).Output()
	if err != nil || !strings.Contains(string(info), `"backing-filename-format": "raw"`) {
		t.Fatalf("backed qcow2 does not name a raw backing file: %v\n%s", err, info)
	}
}

// TestExportRefusesExisting leaves an existing OUT alone.
func TestExportRefusesExisting(t *testing.T) {
	_, ov, _ := sparseView(t, 1<<30+512)
	out := filepath.Join(t.TempDir(), "out")
	os.WriteFile(out, []byte("keep"), 0o644)
	for name, f := range map[string]func() error{
		"raw":   func() error { return export.Raw(context.Background(), ov, out, nil) },
		"qcow2": func() error { return export.QCOW2(context.Background(), ov, out, nil) },
	} {
		if err := f(); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("%s over an existing file: %v", name, err)
		}
	}
	if b, _ := os.ReadFile(out); string(b) != "keep" {
		t.Fatal("existing file changed")
	}
}

// TestKilledExportLeavesNothing runs the built binary's export and kills it
// with SIGKILL at times spread over an uninterrupted run's duration and
// while it holds the file being written: OUT is either absent or the
// complete image, and nothing partial is left in its directory.
func TestKilledExportLeavesNothing(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	bin := testutil.BuildKvmify(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "src.img")
	data := make([]byte, 48<<20)
	rand.Read(data)
	f, _ := os.Create(img)
	f.Truncate(256 << 20)
	f.WriteAt(data, 0)
	f.WriteAt(data[:8<<20], 200<<20)
	f.Close()
	os.Chmod(img, 0o444)
	h := testutil.FileSHA256(t, img)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	export := func(format string) *exec.Cmd {
		out := filepath.Join(outDir, "disk."+format)
		cmd := exec.Command(bin, "export", img, out, "--format", format, "--ephemeral", "--no-patch")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		return cmd
	}
	// An uninterrupted run times the window the kills are spread over.
	start := time.Now()
	if out, err := export("raw").CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	window := time.Since(start)
	os.Remove(filepath.Join(outDir, "disk.raw"))
	const trials = 16
	var killed, finished, midWrite int
	for i := range trials {
		format := []string{"raw", "qcow2"}[i%2]
		out := filepath.Join(outDir, "disk."+format)
		cmd := export(format)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if i%4 < 2 {
			time.Sleep(window * time.Duration(i/2+1) / (trials/2 + 1))
		} else if writing(cmd.Process.Pid, outDir) {
			// The export's file is open: kill it in the middle of writing.
			time.Sleep(time.Duration(i) * time.Millisecond)
			midWrite++
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err == nil {
			finished++
		}
		// The CLI may publish through a hidden name of its own; one left
		// by a kill at that moment must be complete, like OUT.
		// A qcow2 export's OUT.properties.json is written, through a hidden
		// temporary name, after OUT is in place: it may be there only
		// beside OUT, and whole.
		sidecar := out + ".properties.json"
		if b, err := os.ReadFile(sidecar); err == nil {
			if _, err := os.Stat(out); err != nil {
				t.Fatalf("trial %d: %s left without OUT", i, filepath.Base(sidecar))
			}
			if !json.Valid(b) {
				t.Fatalf("trial %d: partial %s left: %q", i, filepath.Base(sidecar), b)
			}
			os.Remove(sidecar)
		}
		entries, _ := os.ReadDir(outDir)
		for _, e := range entries {
			if name := e.Name(); name != filepath.Base(out) {
				if !strings.HasPrefix(name, ".") {
					t.Fatalf("trial %d: %s left in OUT's directory", i, name)
				}
				p := filepath.Join(outDir, name)
				if b, err := exec.Command(qemuImg, "compare", "-f", format, "-F", "raw", p, img).CombinedOutput(); err != nil {
					t.Fatalf("trial %d: partial %s left in OUT's directory: %v\n%s", i, name, err, b)
				}
				t.Logf("trial %d: killed while publishing; complete %s left", i, name)
				os.Remove(p)
			}
		}
		if _, err := os.Stat(out); err == nil {
			// Only a complete image may carry the name.
			if b, err := exec.Command(qemuImg, "compare", "-f", format, "-F", "raw", out, img).CombinedOutput(); err != nil {
				t.Fatalf("trial %d: %s under OUT's name is not the whole disk: %v\n%s", i, format, err, b)
			}
			os.Remove(out)
		}
	}
	t.Logf("%d trials over %v: %d killed (%d seen writing OUT's file), %d finished first", trials, window.Round(time.Millisecond), killed, midWrite, finished)
	if midWrite == 0 {
		t.Error("no trial was killed while writing the export")
	}
	if testutil.FileSHA256(t, img) != h {
		t.Fatal("source changed")
	}
}

// writing waits (up to 10 s) until process pid holds a file open in dir, the
// export being written, and reports whether it saw one before the process
// ended.
func writing(pid int, dir string) bool {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	for range 10000 {
		entries, err := os.ReadDir(fds)
		if err != nil {
			return false
		}
		for _, e := range entries {
			if l, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && strings.HasPrefix(l, dir+"/") {
				return true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return false
}
