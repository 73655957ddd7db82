package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/overlay"
)

const ovBlock = 64 << 10

// makeOverlayFile builds a source image and an overlay over it with known
// changes: blocks 2-3 data (a write straddling them), block 5 data, blocks
// 10-11 zero, and a metadata key. It returns the overlay path.
func makeOverlayFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(srcPath, bytes.Repeat([]byte("kvmify"), 16*ovBlock/6+1)[:16*ovBlock], 0o444); err != nil {
		t.Fatal(err)
	}
	sum := testutil.FileSHA256(t, srcPath)
	t.Cleanup(func() {
		if got := testutil.FileSHA256(t, srcPath); got != sum {
			t.Errorf("source image changed")
		}
	})
	src, err := disk.OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, overlay.DefaultPath(srcPath))
	o, err := overlay.Open(path, src, overlay.Options{SourcePath: srcPath})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt(make([]byte, 100), 3*ovBlock-50); err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte{1}, 5*ovBlock+7); err != nil {
		t.Fatal(err)
	}
	if err := o.Zero(10*ovBlock, 2*ovBlock); err != nil {
		t.Fatal(err)
	}
	if err := o.SetMeta("bootfix", []byte(`{"applied":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

var wantOverlayExtents = []overlayExtentJSON{
	{Offset: 2 * ovBlock, Length: 2 * ovBlock, Kind: "data"},
	{Offset: 5 * ovBlock, Length: ovBlock, Kind: "data"},
	{Offset: 10 * ovBlock, Length: 2 * ovBlock, Kind: "zero"},
}

func TestOverlayInfoJSON(t *testing.T) {
	path := makeOverlayFile(t)
	var out bytes.Buffer
	if err := runOverlayInfo(context.Background(), overlayInfoOptions{JSON: true}, []string{path}, &out); err != nil {
		t.Fatal(err)
	}
	var got overlayInfoJSON
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if got.SourceSize != 16*ovBlock || got.BlockSize != ovBlock || len(got.SourceSampleFingerprint) != 64 || got.SampledBytes != 16*ovBlock {
		t.Errorf("header fields wrong: %+v", got)
	}
	if !reflect.DeepEqual(got.MetaKeys, []string{"bootfix"}) {
		t.Errorf("meta_keys = %v", got.MetaKeys)
	}
	if !reflect.DeepEqual(got.Extents, wantOverlayExtents) {
		t.Errorf("extents = %+v, want %+v", got.Extents, wantOverlayExtents)
	}
	if got.DataBytes != 3*ovBlock || got.ZeroBytes != 2*ovBlock {
		t.Errorf("data_bytes %d zero_bytes %d", got.DataBytes, got.ZeroBytes)
	}
}

func TestOverlayInfoText(t *testing.T) {
	path := makeOverlayFile(t)
	var out bytes.Buffer
	if err := runOverlayInfo(context.Background(), overlayInfoOptions{}, []string{path}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"metadata keys:", "bootfix", "3 extents", "131072  131072  data", "655360  131072  zero"} {
		if !strings.Contains(s, want) {
			t.Errorf("text output lacks %q:\n%s", want, s)
		}
	}
}

func TestOverlayInfoCLI(t *testing.T) {
	path := makeOverlayFile(t)
	bin := testutil.BuildKvmify(t)
	// Flags may follow the argument.
	out, err := exec.Command(bin, "overlay", "info", path, "--json").Output()
	if err != nil {
		t.Fatalf("overlay info: %v", err)
	}
	var got overlayInfoJSON
	if err := json.Unmarshal(out, &got); err != nil || !reflect.DeepEqual(got.Extents, wantOverlayExtents) {
		t.Fatalf("overlay info --json: %v %+v", err, got.Extents)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not an overlay"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"overlay", "info"}, exitUsage, "accepts 1 arg"},
		{[]string{"overlay", "info", path, "--bogus"}, exitUsage, "unknown flag"},
		{[]string{"overlay", "frobnicate"}, exitUsage, "unknown command"},
		{[]string{"overlay", "info", bad}, exitFailure, "bad magic"},
		{[]string{"overlay", "info", filepath.Join(t.TempDir(), "missing")}, exitFailure, "no such file"},
	} {
		cmd := exec.Command(bin, c.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != c.code || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("kvmify %v: %v, stderr %q; want exit %d mentioning %q", c.args, err, stderr.String(), c.code, c.msg)
		}
	}
}

// TestOverlayInfoAfterServe writes through 'kvmify serve' with qemu-io and
// checks that 'overlay info' lists exactly the blocks qemu-io changed.
func TestOverlayInfoAfterServe(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	nbdinfo := testutil.RequireTool(t, "nbdinfo")
	bin := testutil.BuildKvmify(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(src, bytes.Repeat([]byte{0x5a}, 32*ovBlock), 0o444); err != nil {
		t.Fatal(err)
	}
	sum := testutil.FileSHA256(t, src)
	ov := filepath.Join(dir, "disk.ov")
	sock := filepath.Join(dir, "s.sock")
	server := startServeOverlay(t, bin, nbdinfo, src, ov, sock)
	defer func() {
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
	}()
	out, err := exec.Command(qemuIO, "-f", "raw", "nbd+unix:///?socket="+sock,
		"-c", fmt.Sprintf("write -P 1 %d %d", 1*ovBlock+512, 1024), // block 1
		"-c", fmt.Sprintf("write -P 2 %d %d", 2*ovBlock, 2*ovBlock), // blocks 2-3
		"-c", fmt.Sprintf("write -z %d %d", 8*ovBlock, 3*ovBlock), // blocks 8-10
		"-c", fmt.Sprintf("discard %d %d", 20*ovBlock, ovBlock), // block 20
		"-c", "flush").CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	server.Process.Signal(syscall.SIGTERM)
	if err := server.Wait(); err != nil {
		t.Fatalf("kvmify serve did not stop cleanly: %v", err)
	}
	var buf bytes.Buffer
	if err := runOverlayInfo(context.Background(), overlayInfoOptions{JSON: true}, []string{ov}, &buf); err != nil {
		t.Fatal(err)
	}
	var got overlayInfoJSON
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []overlayExtentJSON{
		{Offset: 1 * ovBlock, Length: 3 * ovBlock, Kind: "data"},
		{Offset: 8 * ovBlock, Length: 3 * ovBlock, Kind: "zero"},
		{Offset: 20 * ovBlock, Length: ovBlock, Kind: "zero"},
	}
	if !reflect.DeepEqual(got.Extents, want) {
		t.Fatalf("extents after qemu-io through kvmify serve = %+v, want %+v", got.Extents, want)
	}
	if got.SourceSize != 32*ovBlock {
		t.Fatalf("source_size %d", got.SourceSize)
	}
	if testutil.FileSHA256(t, src) != sum {
		t.Fatal("source image changed")
	}
}

// destroyNewestRoot overwrites both copies of the overlay's newest commit
// root (format 2: generation N's root is at 0x1000 for even N, 0x2000 for
// odd, copies at +0 and +0x200) and returns that generation.
func destroyNewestRoot(t *testing.T, path string) uint64 {
	t.Helper()
	in, err := overlay.ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(0x2000)
	if in.Generation%2 == 0 {
		off = 0x1000
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 0x200+40), off); err != nil {
		t.Fatal(err)
	}
	return in.Generation
}

// TestOverlayRollbackCLI: an overlay whose newest root is destroyed is
// refused by 'overlay info' with the generation lost and the rollback
// command; 'overlay rollback' accepts the older generation after verifying
// it, and the overlay then reads again.
func TestOverlayRollbackCLI(t *testing.T) {
	path := makeOverlayFile(t)
	bin := testutil.BuildKvmify(t)
	gen := destroyNewestRoot(t, path)
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	_, stderr, code := run("overlay", "info", path)
	hint := fmt.Sprintf("kvmify overlay rollback %s --to-generation %d", path, gen-1)
	if code != exitFailure || !strings.Contains(stderr, fmt.Sprintf("generation %d", gen)) || !strings.Contains(stderr, hint) {
		t.Fatalf("overlay info of a damaged overlay: exit %d, stderr %q; want exit 1 naming generation %d and %q", code, stderr, gen, hint)
	}
	if _, stderr, code := run("overlay", "rollback", path, "--to-generation", fmt.Sprint(gen+7)); code != exitFailure || !strings.Contains(stderr, "no intact commit root holds it") {
		t.Fatalf("rollback to a generation no root holds: exit %d, %q", code, stderr)
	}
	stdout, stderr, code := run("overlay", "rollback", path, "--json")
	var got overlayRollbackJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil || got.Accepted != gen-1 || got.GivenUp != gen || got.Generation != gen+1 {
		t.Fatalf("overlay rollback: exit %d, %q %q; want generation %d accepted, %d given up", code, stdout, stderr, gen-1, gen)
	}
	stdout, stderr, code = run("overlay", "info", path, "--json")
	var in overlayInfoJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &in) != nil || in.Generation != gen+1 {
		t.Fatalf("overlay info after rollback: exit %d, %q %q", code, stdout, stderr)
	}
	if _, stderr, code := run("overlay", "rollback", path); code != exitUsage || !strings.Contains(stderr, "nothing to roll back") {
		t.Fatalf("rollback of an intact overlay without --to-generation: exit %d, %q", code, stderr)
	}
}

// TestOverlayInfoVerifySource: the sample fingerprint is named as such,
// --verify-source accepts the overlay's own image and refuses one changed
// outside the sampled regions only when a full hash was recorded.
func TestOverlayInfoVerifySource(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	data := bytes.Repeat([]byte("kvmify!!"), 64*ovBlock/8)
	if err := os.WriteFile(img, data, 0o444); err != nil {
		t.Fatal(err)
	}
	// Byte 2 MiB + 100 is outside every sample of a 4 MiB image (first and
	// last MiB, 16 64 KiB blocks at multiples of 4 MiB/17).
	changed := bytes.Clone(data)
	changed[2<<20+100] ^= 1
	other := filepath.Join(dir, "changed.img")
	if err := os.WriteFile(other, changed, 0o444); err != nil {
		t.Fatal(err)
	}
	sum := testutil.FileSHA256(t, img)
	for _, full := range []bool{false, true} {
		src, err := disk.OpenSource(img)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("ov-%v", full))
		o, err := overlay.Open(path, src, overlay.Options{SourcePath: img, FullHash: full})
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
		src.Close()
		var out bytes.Buffer
		if err := runOverlayInfo(context.Background(), overlayInfoOptions{VerifySource: img}, []string{path}, &out); err != nil {
			t.Fatalf("full=%v: verify against its own image: %v", full, err)
		}
		for _, want := range []string{"source sample fingerprint:", "1.9 MiB sampled", "not the image's sha256", "source check:"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("full=%v: text lacks %q:\n%s", full, want, out.String())
			}
		}
		if full != strings.Contains(out.String(), "full sha256 matches") {
			t.Errorf("full=%v: source check line wrong:\n%s", full, out.String())
		}
		out.Reset()
		err = runOverlayInfo(context.Background(), overlayInfoOptions{VerifySource: other, JSON: true}, []string{path}, &out)
		var in overlayInfoJSON
		if jerr := json.Unmarshal(out.Bytes(), &in); jerr != nil || in.SourceCheck == nil || !in.SourceCheck.SampleMatches {
			t.Fatalf("full=%v: JSON %v %s", full, jerr, out.String())
		}
		if full != (err != nil) || full != (in.SourceSHA256 != "") {
			t.Errorf("full=%v: image changed outside the samples: err %v, source_sha256 %q", full, err, in.SourceSHA256)
		}
		if full && !errors.Is(err, overlay.ErrSourceMismatch) {
			t.Errorf("full hash mismatch error %v is not ErrSourceMismatch", err)
		}
	}
	if testutil.FileSHA256(t, img) != sum {
		t.Fatal("source image changed")
	}
}

// TestServeDamagedBlockIsEIO: a bit flipped in a stored overlay block is an
// I/O error for the NBD client (qemu-io), never data, while the blocks
// around it still read.
func TestServeDamagedBlockIsEIO(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	nbdinfo := testutil.RequireTool(t, "nbdinfo")
	bin := testutil.BuildKvmify(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(src, bytes.Repeat([]byte{0x5a}, 16*ovBlock), 0o444); err != nil {
		t.Fatal(err)
	}
	sum := testutil.FileSHA256(t, src)
	ov := filepath.Join(dir, "disk.ov")
	sock := filepath.Join(dir, "s.sock")
	uri := "nbd+unix:///?socket=" + sock
	qio := func(cmds ...string) (string, error) {
		args := []string{"-f", "raw", uri}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		out, err := exec.Command(qemuIO, args...).CombinedOutput()
		return string(out), err
	}
	stop := func(server *exec.Cmd) {
		server.Process.Signal(syscall.SIGTERM)
		if err := server.Wait(); err != nil {
			t.Fatalf("kvmify serve did not stop cleanly: %v", err)
		}
	}
	server := startServeOverlay(t, bin, nbdinfo, src, ov, sock)
	if out, err := qio(fmt.Sprintf("write -P 7 %d %d", 3*ovBlock, ovBlock), "flush"); err != nil {
		t.Fatalf("qemu-io write: %v\n%s", err, out)
	}
	stop(server)
	// Find the slot holding block 3 (its 64 KiB of 7s) in the overlay file.
	whole, err := os.ReadFile(ov)
	if err != nil {
		t.Fatal(err)
	}
	slot := bytes.Index(whole, bytes.Repeat([]byte{7}, ovBlock))
	if slot < 0 {
		t.Fatal("no slot of the overlay file holds block 3's data")
	}
	f, err := os.OpenFile(ov, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{7 ^ 0x10}, int64(slot)+5000)
	f.Close()
	server = startServeOverlay(t, bin, nbdinfo, src, ov, sock)
	defer stop(server)
	out, err := qio(fmt.Sprintf("read -P 7 %d 4096", 3*ovBlock+4096))
	if !strings.Contains(out, "read failed: Input/output error") {
		t.Fatalf("reading the damaged granule: %v\n%s; want an I/O error", err, out)
	}
	if strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("damaged data was served:\n%s", out)
	}
	if out, err := qio(fmt.Sprintf("read -P 7 %d 4096", 3*ovBlock), fmt.Sprintf("read -P 0x5a %d 4096", 4*ovBlock)); err != nil || strings.Contains(out, "error") || strings.Contains(out, "failed") {
		t.Fatalf("reading intact granules around the damage: %v\n%s", err, out)
	}
	if testutil.FileSHA256(t, src) != sum {
		t.Fatal("source image changed")
	}
}
