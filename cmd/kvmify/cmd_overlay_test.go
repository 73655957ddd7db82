package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
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
	if got.SourceSize != 16*ovBlock || got.BlockSize != ovBlock || len(got.SourceFingerprint) != 64 {
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
