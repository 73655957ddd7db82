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
