package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestKillDuringPatching kills serve with SIGKILL at spread-out moments
// while it patches a new overlay, many times: the overlay path is either
// absent or names a complete patched overlay, temporary files left by a
// kill are removed by the next run, the final overlay serves exactly what a
// clean run serves, and the source never changes.
func TestKillDuringPatching(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a patching server many times; -short")
	}
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	srcSum := testutil.FileSHA256(t, img)
	dir := t.TempDir()
	ov := filepath.Join(dir, "w.ovl")

	// The patch is applied while a temporary overlay exists beside ov; a
	// clean run shows how long that is, and the kills are spread over it
	// (and a little before and after).
	temps := func() []string {
		var out []string
		for _, n := range listDir(t, dir) {
			if strings.HasPrefix(n, ".kvmify-tmp-") {
				out = append(out, n)
			}
		}
		return out
	}
	hasTemp := func() bool { return len(temps()) > 0 }
	// waitTemp polls until a temporary overlay that was not there before
	// (a killed run's is removed by the next run) appears, or limit passes.
	waitTemp := func(limit time.Duration) bool {
		before := temps()
		for end := time.Now().Add(limit); time.Now().Before(end); {
			for _, n := range temps() {
				if !slices.Contains(before, n) {
					return true
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
		return false
	}
	cmd := exec.Command(bin, "serve", img, "--overlay", ov, "--unix", filepath.Join(t.TempDir(), "s.sock"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitTemp(10 * time.Second) {
		t.Fatal("no temporary overlay seen while patching")
	}
	appeared := time.Now()
	for hasTemp() {
		time.Sleep(100 * time.Microsecond)
	}
	window := time.Since(appeared)
	cmd.Process.Kill()
	cmd.Wait()
	os.Remove(ov)

	const trials = 30
	rng := rand.New(rand.NewPCG(9, 9))
	var present, absent, midPatch int
	for i := range trials {
		sock := filepath.Join(t.TempDir(), "s.sock")
		cmd := exec.Command(bin, "serve", img, "--overlay", ov, "--unix", sock)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitTemp(5 * time.Second) {
			t.Logf("trial %d: no new temporary overlay seen", i)
		}
		delay := time.Duration(rng.Float64() * 4 * float64(window))
		time.Sleep(delay)
		cmd.Process.Kill()
		cmd.Wait()
		for _, n := range listDir(t, dir) {
			if strings.HasPrefix(n, ".kvmify-tmp-") {
				midPatch++
				break
			}
		}
		if _, err := os.Stat(ov); err != nil {
			absent++
			continue
		}
		present++
		assertPatchedOverlay(t, bin, ov, fmt.Sprintf("trial %d (kill after %v)", i, delay))
		os.Remove(ov) // the next trial patches afresh
	}
	t.Logf("%d kills within %v of the temporary overlay appearing (it lives %v): overlay absent %d, complete %d; %d kills left a temporary overlay",
		trials, 4*window, window, absent, present, midPatch)
	if midPatch == 0 || absent == 0 {
		t.Errorf("no kill landed while patching (%d of %d left a temporary overlay); the test proves nothing", midPatch, trials)
	}

	// A clean run removes what the kills left and patches as usual.
	serveBriefly(t, bin, "", img, "--overlay", ov)
	if got := listDir(t, dir); !slices.Equal(got, []string{"w.ovl"}) {
		t.Errorf("files left beside the overlay: %v", got)
	}
	got, want := filepath.Join(t.TempDir(), "got.raw"), filepath.Join(t.TempDir(), "want.raw")
	if _, stderr, code := kv(t, bin, "", "export", img, got, "--overlay", ov); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	if _, stderr, code := kv(t, bin, "", "export", img, want, "--ephemeral"); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	if testutil.FileSHA256(t, got) != testutil.FileSHA256(t, want) {
		t.Error("the overlay patched after the kills differs from a clean patch")
	}
	if testutil.FileSHA256(t, img) != srcSum {
		t.Fatal("the source image changed")
	}
}

// TestFailedPatchLeavesNothing: when applying the fix fails part way (the
// overlay's file system fills up), no overlay is left at its path, no
// temporary file beside it, and a later run with room patches normally.
func TestFailedPatchLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		if testutil.InCI() {
			t.Fatal("needs root to mount a small tmpfs")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	dir := t.TempDir()
	// Room for the overlay's header but not for the fix's blocks.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	ov := filepath.Join(dir, "w.ovl")
	_, stderr, code := kv(t, bin, "", "serve", img, "--overlay", ov, "--unix", filepath.Join(t.TempDir(), "s.sock"))
	if code != 1 || !strings.Contains(stderr, "no space") {
		t.Fatalf("serve onto a full file system: exit %d\n%s", code, stderr)
	}
	if got := listDir(t, dir); len(got) != 0 {
		t.Fatalf("a failed patch left %v", got)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	if s := serveBriefly(t, bin, "", img, "--overlay", ov); !strings.Contains(s, "applied the ide boot fix") {
		t.Errorf("the run after the failure did not patch:\n%s", s)
	}
}

// assertPatchedOverlay fails unless ov is a complete overlay holding a
// recorded boot fix, as overlay info reads it.
func assertPatchedOverlay(t *testing.T, bin, ov, when string) {
	t.Helper()
	out, stderr, code := kv(t, bin, "", "overlay", "info", "--json", ov)
	var info struct {
		MetaKeys []string `json:"meta_keys"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || !slices.Contains(info.MetaKeys, "kvmify.patch") {
		t.Fatalf("%s: %s is not a complete patched overlay: %d\n%s%s", when, ov, code, out, stderr)
	}
}
