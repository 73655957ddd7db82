package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// containerSets makes, from the raw disk img, the containers kvmify reads
// by content: E01 sets (deflate fast and best, 1 MiB segments) and a split
// raw set. It returns the path to open for each, and every input file.
func containerSets(t *testing.T, img string) (open map[string]string, inputs []string) {
	t.Helper()
	testutil.RequireTool(t, "split")
	dir := t.TempDir()
	open = map[string]string{"raw": img}
	inputs = []string{img}
	for _, c := range []string{"fast", "best"} {
		segs := testutil.EWFAcquire(t, img, dir, "e01-"+c, "-c", "deflate:"+c, "-S", "1M", "-f", "encase6")
		if len(segs) < 2 {
			t.Fatalf("ewfacquire wrote one segment; the test wants several")
		}
		open["e01-"+c] = segs[0]
		inputs = append(inputs, segs...)
	}
	prefix := filepath.Join(dir, "split.")
	if b, err := exec.Command("split", "-b", "20M", "-a", "3", "--numeric-suffixes=1", img, prefix).CombinedOutput(); err != nil {
		t.Fatalf("split: %v\n%s", err, b)
	}
	segs, _ := filepath.Glob(prefix + "*")
	open["split"] = prefix + "001"
	inputs = append(inputs, segs...)
	qemuImg := testutil.RequireTool(t, "qemu-img")
	for name, args := range vmFormats {
		out := filepath.Join(dir, name+".img")
		cmd := append(append([]string{"convert", "-f", "raw"}, args...), img, out)
		if b, err := exec.Command(qemuImg, cmd...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", cmd, err, b)
		}
		open[name] = out
		inputs = append(inputs, out)
	}
	for _, p := range inputs {
		os.Chmod(p, 0o444)
	}
	return open, inputs
}

// vmFormats are the VM image formats the tests make with qemu-img from a
// raw disk. The VHDs are forced to the raw disk's exact size (a VHD's size
// otherwise rounds up to a CHS geometry).
var vmFormats = map[string][]string{
	"qcow2":       {"-O", "qcow2"},
	"qcow2-c":     {"-O", "qcow2", "-c"},
	"vhd":         {"-O", "vpc", "-o", "force_size=on"},
	"vhd-fixed":   {"-O", "vpc", "-o", "subformat=fixed,force_size=on"},
	"vhdx":        {"-O", "vhdx"},
	"vmdk":        {"-O", "vmdk"},
	"vmdk-stream": {"-O", "vmdk", "-o", "subformat=streamOptimized"},
}

// inspectJSON runs inspect --json and drops the fields that name the
// container, which differ by design.
func inspectJSON(t *testing.T, bin, img string) (string, map[string]any) {
	t.Helper()
	var rep map[string]any
	if err := json.Unmarshal(run(t, bin, "inspect", "--json", img), &rep); err != nil {
		t.Fatal(err)
	}
	format := rep["format"].(string)
	delete(rep, "image")
	delete(rep, "format")
	return format, rep
}

// TestContainersServeLikeTheRawDisk checks, for E01 and split raw sets and
// qcow2, VHD, VHDX and VMDK images made from a Windows-like disk, that inspect reports what it reports for the
// raw disk (plus the container's format), that export --no-patch writes
// the raw disk byte for byte and the patched export equals the raw disk's
// patched export, that verify checks the E01 digests, and that no input
// file changes.
func TestContainersServeLikeTheRawDisk(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	open, inputs := containerSets(t, img)
	before := map[string]string{}
	for _, p := range inputs {
		before[p] = testutil.FileSHA256(t, p)
	}
	rawSum := before[img]
	_, rawInspect := inspectJSON(t, bin, img)
	wantFormat := map[string]string{"raw": "raw", "e01-fast": "ewf", "e01-best": "ewf", "split": "split-raw",
		"qcow2": "qcow2", "qcow2-c": "qcow2", "vhd": "vhd/dynamic", "vhd-fixed": "vhd/fixed", "vhdx": "vhdx",
		"vmdk": "vmdk/monolithicSparse", "vmdk-stream": "vmdk/streamOptimized"}
	var rawPatched string
	for _, name := range []string{"raw", "e01-fast", "e01-best", "split", "qcow2", "qcow2-c", "vhd", "vhd-fixed", "vhdx", "vmdk", "vmdk-stream"} {
		t.Run(name, func(t *testing.T) {
			path := open[name]
			format, rep := inspectJSON(t, bin, path)
			if format != wantFormat[name] {
				t.Fatalf("inspect format %q, want %q", format, wantFormat[name])
			}
			a, _ := json.Marshal(rep)
			b, _ := json.Marshal(rawInspect)
			if !bytes.Equal(a, b) {
				t.Fatalf("inspect differs from the raw disk's:\n%s\n%s", a, b)
			}
			dir := t.TempDir()
			plain := filepath.Join(dir, "plain.raw")
			run(t, bin, "export", "--no-patch", "--ephemeral", path, plain)
			if testutil.FileSHA256(t, plain) != rawSum {
				t.Fatal("export --no-patch differs from the raw disk")
			}
			patched := filepath.Join(dir, "patched.raw")
			run(t, bin, "export", "--target", "ide", "--ephemeral", path, patched)
			sum := testutil.FileSHA256(t, patched)
			if sum == rawSum {
				t.Fatal("the patched export equals the unpatched disk")
			}
			if name == "raw" {
				rawPatched = sum
			} else if rawPatched != "" && sum != rawPatched {
				t.Fatal("the patched export differs from the raw disk's patched export")
			}
			out := string(run(t, bin, "verify", path))
			if strings.HasPrefix(name, "e01") && strings.Count(out, " ok") != 2 {
				t.Fatalf("verify of the E01 set:\n%s", out)
			}
			if _, vm := vmFormats[name]; vm && !strings.Contains(out, "structure: every table entry resolves") {
				t.Fatalf("verify of %s:\n%s", name, out)
			}
			if _, vm := vmFormats[name]; !vm && !strings.HasPrefix(name, "e01") && !strings.Contains(out, "nothing to verify") {
				t.Fatalf("verify of %s:\n%s", name, out)
			}
		})
	}
	for p, s := range before {
		if testutil.FileSHA256(t, p) != s {
			t.Fatalf("%s changed", p)
		}
	}
}

// runFail runs the command, wants exit status 1, and returns its stderr.
func runFail(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("%s %v: %v, want exit status 1\n%s", name, args, err, stderr.String())
	}
	return stderr.String()
}

// flipAt changes one byte of a file (the test's own copy).
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	os.Chmod(path, 0o644)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0xa5
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedE01IsAnError damages E01 sets three ways and checks that
// verify, export and serve (read by nbdcopy and qemu-img convert) each
// fail naming the segment file, and never hand out other bytes.
func TestDamagedE01IsAnError(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	nbdcopy := testutil.RequireTool(t, "nbdcopy")
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := make([]byte, 6<<20)
	rand.Read(data) // incompressible: several 1 MiB segments
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := func(t *testing.T) []string {
		segs := testutil.EWFAcquire(t, raw, t.TempDir(), "ev", "-c", "deflate:fast", "-S", "1M")
		if len(segs) < 3 {
			t.Fatalf("want 3 segments or more, got %v", segs)
		}
		return segs
	}

	t.Run("flipped-chunk", func(t *testing.T) {
		segs := fresh(t)
		off, size := testutil.EWFSection(t, segs[1], "sectors")
		flipAt(t, segs[1], off+size/2)
		sums := map[string]string{}
		for _, p := range segs {
			sums[p] = testutil.FileSHA256(t, p)
		}
		for _, msg := range []string{
			runFail(t, bin, "verify", segs[0]),
			runFail(t, bin, "export", "--no-patch", "--ephemeral", segs[0], filepath.Join(t.TempDir(), "out.raw")),
		} {
			if !strings.Contains(msg, segs[1]) || !strings.Contains(msg, "chunk") {
				t.Fatalf("the error does not name the segment and chunk:\n%s", msg)
			}
		}
		sock := filepath.Join(t.TempDir(), "s.sock")
		var stderr bytes.Buffer
		srv := exec.Command(bin, "serve", "--no-patch", "--read-only", "--unix", sock, segs[0])
		srv.Stderr = &stderr
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		waitSocket(t, sock, &stderr)
		uri := "nbd+unix:///?socket=" + sock
		out := filepath.Join(t.TempDir(), "copy.raw")
		if b, err := exec.Command(nbdcopy, uri, out).CombinedOutput(); err == nil {
			t.Fatalf("nbdcopy copied a damaged E01 without an error:\n%s", b)
		} else if !strings.Contains(strings.ToLower(string(b)), "input/output error") {
			t.Fatalf("nbdcopy failed otherwise than with EIO: %v\n%s", err, b)
		}
		if b, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", uri, out+"2").CombinedOutput(); err == nil {
			t.Fatalf("qemu-img converted a damaged E01 without an error:\n%s", b)
		} else {
			t.Logf("qemu-img: %s", b)
		}
		// The undamaged first segment's bytes are still served as they are.
		first := filepath.Join(t.TempDir(), "first.raw")
		if b, err := exec.Command(qemuImg, "dd", "-f", "raw", "-O", "raw", "bs=65536", "count=8", "if="+uri, "of="+first).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img dd of the first 512 KiB: %v\n%s", err, b)
		}
		if got, _ := os.ReadFile(first); !bytes.Equal(got, data[:len(got)]) || len(got) != 8*65536 {
			t.Fatal("the first 512 KiB differ from the raw disk")
		}
		for p, s := range sums {
			if testutil.FileSHA256(t, p) != s {
				t.Fatalf("%s changed", p)
			}
		}
	})

	for _, tc := range []struct {
		name   string
		damage func(path string) error
	}{
		{"missing-segment", os.Remove},
		{"truncated-segment", func(p string) error { os.Chmod(p, 0o644); return os.Truncate(p, 300000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			segs := fresh(t)
			if err := tc.damage(segs[1]); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"verify", segs[0]},
				{"inspect", segs[0]},
				{"export", "--no-patch", "--ephemeral", segs[0], filepath.Join(t.TempDir(), "out.raw")},
				{"serve", "--no-patch", "--read-only", "--unix", filepath.Join(t.TempDir(), "s.sock"), segs[0]},
			} {
				if msg := runFail(t, bin, args...); !strings.Contains(msg, segs[1]) {
					t.Fatalf("%s: the error does not name %s:\n%s", args[0], segs[1], msg)
				}
			}
		})
	}
}

// TestNBDSourceLikeTheRawDisk serves the Windows-like disk with qemu-nbd
// and checks that inspect and export --no-patch of its nbd+unix URI equal
// those of the raw disk.
func TestNBDSourceLikeTheRawDisk(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	qemuNBD := testutil.RequireTool(t, "qemu-nbd")
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	sum := testutil.FileSHA256(t, img)
	sock := filepath.Join(t.TempDir(), "q.sock")
	var stderr bytes.Buffer
	srv := exec.Command(qemuNBD, "--read-only", "--persistent", "--shared=4", "-f", "raw", "-x", "", "-k", sock, img)
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitSocket(t, sock, &stderr)
	uri := "nbd+unix:///?socket=" + sock
	format, rep := inspectJSON(t, bin, uri)
	_, rawRep := inspectJSON(t, bin, img)
	a, _ := json.Marshal(rep)
	b, _ := json.Marshal(rawRep)
	if format != "nbd" || !bytes.Equal(a, b) {
		t.Fatalf("inspect of %s (%s) differs from the raw disk's:\n%s\n%s", uri, format, a, b)
	}
	out := filepath.Join(t.TempDir(), "plain.raw")
	run(t, bin, "export", "--no-patch", "--ephemeral", uri, out)
	if testutil.FileSHA256(t, out) != sum {
		t.Fatal("export --no-patch of the NBD source differs from the raw disk")
	}
}

// TestE01MountsLikeTheRawDisk mounts an E01 set of a Windows-like disk
// through FUSE, patched, and checks that disk.img and the hive files equal
// those of the raw disk's mount.
func TestE01MountsLikeTheRawDisk(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	segs := testutil.EWFAcquire(t, img, t.TempDir(), "m", "-c", "deflate:fast", "-S", "1M")
	sums := map[string]string{}
	for _, p := range segs {
		sums[p] = testutil.FileSHA256(t, p)
	}
	raw := mountAndCopy(t, bin, img, "ide")
	e01 := mountAndCopy(t, bin, segs[0], "ide")
	if testutil.FileSHA256(t, raw.disk) != testutil.FileSHA256(t, e01.disk) {
		t.Fatal("the E01's patched disk.img differs from the raw disk's")
	}
	if !bytes.Equal(raw.original, e01.original) || !bytes.Equal(raw.patched, e01.patched) {
		t.Fatal("SYSTEM.original or SYSTEM.patched differ")
	}
	for p, s := range sums {
		if testutil.FileSHA256(t, p) != s {
			t.Fatalf("%s changed", p)
		}
	}
}

// TestTruncatedVHDXIsNamed: a VHDX cut short is an error naming the file,
// from verify, export and serve alike, never different bytes; the intact
// image verifies.
func TestTruncatedVHDXIsNamed(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	b := make([]byte, 24<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	os.WriteFile(raw, b, 0o644)
	img := filepath.Join(dir, "disk.vhdx")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "vhdx", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out := string(run(t, bin, "verify", img)); !strings.Contains(out, "structure") || !strings.Contains(out, "ok") {
		t.Fatalf("verify of an intact VHDX:\n%s", out)
	}
	fi, _ := os.Stat(img)
	if err := os.Truncate(img, fi.Size()*2/3); err != nil {
		t.Fatal(err)
	}
	os.Chmod(img, 0o444)
	sum := testutil.FileSHA256(t, img)
	for _, args := range [][]string{
		{"verify", img},
		{"export", "--no-patch", "--ephemeral", img, filepath.Join(dir, "out.raw")},
	} {
		if msg := runFail(t, bin, args...); !strings.Contains(msg, img) {
			t.Errorf("%s: the error does not name %s:\n%s", args[0], img, msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.raw")); err == nil {
		t.Error("a failed export left OUT behind")
	}
	if testutil.FileSHA256(t, img) != sum {
		t.Fatal("the image changed")
	}
}

// TestE01ReportRecordsDigests: export --report --hash of an E01 set records
// the MD5 and SHA-1 the set stores beside the ones computed over the media
// (equal to md5sum/sha1sum of the raw disk the set was made from).
func TestE01ReportRecordsDigests(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	b := make([]byte, 6<<20)
	for i := range b {
		b[i] = byte(i ^ i>>9)
	}
	os.WriteFile(raw, b, 0o644)
	segs := testutil.EWFAcquire(t, raw, dir, "ev", "-c", "deflate:fast", "-S", "1M", "-f", "encase6")
	rep := filepath.Join(dir, "report.json")
	run(t, bin, "export", "--no-patch", "--ephemeral", "--report", rep, "--hash", segs[0], filepath.Join(dir, "out.raw"))
	var r struct {
		SHA256  string `json:"source_sha256"`
		Digests []struct {
			Name, Stored, Computed string
			Match                  bool
		} `json:"source_digests"`
	}
	data, _ := os.ReadFile(rep)
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	md5sum := strings.Fields(string(run(t, "md5sum", raw)))[0]
	sha1sum := strings.Fields(string(run(t, "sha1sum", raw)))[0]
	got := map[string]string{}
	for _, d := range r.Digests {
		if !d.Match || d.Stored != d.Computed {
			t.Errorf("digest %+v does not match", d)
		}
		got[d.Name] = d.Computed
	}
	if got["md5"] != md5sum || got["sha1"] != sha1sum {
		t.Fatalf("report digests %v, want md5 %s and sha1 %s of the raw disk\n%s", got, md5sum, sha1sum, data)
	}
}

// TestOverlayBoundToContainer: an overlay made over one container is
// refused over another holding the same logical disk (same size, same
// sampled fingerprint): an E01 set cut into other segments, or a qcow2.
func TestOverlayBoundToContainer(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	b := make([]byte, 6<<20) // random, so the segments hold what -S says
	rand.Read(b)
	os.WriteFile(raw, b, 0o644)
	a := testutil.EWFAcquire(t, raw, dir, "a", "-c", "deflate:fast", "-S", "1M", "-f", "encase6")
	other := t.TempDir()
	c := testutil.EWFAcquire(t, raw, other, "a", "-c", "deflate:fast", "-S", "2M", "-f", "encase6")
	if len(a) == len(c) {
		t.Fatalf("the two sets have %d segments each; the test wants them cut differently", len(a))
	}
	q := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, q).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ov := filepath.Join(dir, "ov")
	serveBriefly(t, bin, dir, a[0], "--no-patch", "--overlay", ov)
	serveBriefly(t, bin, dir, a[0], "--no-patch", "--overlay", ov) // the same set again
	for _, img := range []string{c[0], q} {
		msg := runFail(t, bin, "export", "--no-patch", "--overlay", ov, img, filepath.Join(t.TempDir(), "out.raw"))
		if !strings.Contains(msg, "different source") && !strings.Contains(msg, "was made over") {
			t.Errorf("%s with the overlay of another container: %s", img, msg)
		}
	}
}
