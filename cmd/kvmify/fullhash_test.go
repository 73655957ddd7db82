package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestFullHashBindsTheWholeSource: an overlay made with --full-hash is
// refused for a source that differs anywhere, even in a byte the sampled
// fingerprint does not read; one made without it is bound by the sample only,
// which overlay info names as such.
func TestFullHashBindsTheWholeSource(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "src.img")
	b := make([]byte, 48<<20)
	rand.Read(b)
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	full, sampled := filepath.Join(dir, "full.ov"), filepath.Join(dir, "sampled.ov")
	serveBriefly(t, bin, dir, img, "--no-patch", "--overlay", full, "--full-hash")
	serveBriefly(t, bin, dir, img, "--no-patch", "--overlay", sampled)

	info, err := exec.Command(bin, "overlay", "info", sampled).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "sampled") {
		t.Errorf("overlay info does not say the fingerprint is sampled: %v\n%s", err, info)
	}

	// Change one byte far from where a sample of a few MiB would look.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(29<<20 + 12345)
	one := []byte{b[off] ^ 0xff}
	f.WriteAt(one, off)
	f.Close()

	cmd := exec.Command(bin, "serve", img, "--no-patch", "--overlay", full, "--unix", filepath.Join(dir, "x.sock"))
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	out, err := cmd.CombinedOutput()
	timer.Stop()
	if err == nil || !strings.Contains(string(out), "sha256") {
		t.Fatalf("an overlay bound to the full sha256 served a changed source: %v\n%s", err, out)
	}
	// The sampled overlay cannot tell; that is what --full-hash is for.
	serveBriefly(t, bin, dir, img, "--no-patch", "--overlay", sampled)
}
