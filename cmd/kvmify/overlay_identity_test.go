package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// overlayPathIn finds the absolute overlay path a serving command printed.
var overlayPathRE = regexp.MustCompile(`overlay (/[^ ;\n]+)`)

func printedOverlay(t *testing.T, stderr string) string {
	t.Helper()
	m := overlayPathRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no absolute overlay path printed:\n%s", stderr)
	}
	return m[1]
}

// serveBriefly starts serve in dir, waits until it serves, then stops it
// with SIGINT and returns its stderr; the exit status must be 0.
func serveBriefly(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	cmd := exec.Command(bin, append(append([]string{"serve"}, args...), "--unix", sock)...)
	cmd.Dir = dir
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitServing(t, &stderr)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	return stderr.String()
}

// waitServing waits until serve says it serves (after the overlay is ready).
func waitServing(t *testing.T, stderr *lockedBuffer) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if strings.Contains(stderr.String(), "press Ctrl-C") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("serve did not start:\n%s", stderr.String())
}

// TestDefaultOverlayFromAnyDirectory: the same image served from two
// working directories (and through a symlink) uses one overlay, named by
// an absolute path outside the image's directory, which stays untouched.
func TestDefaultOverlayFromAnyDirectory(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	imgDir := filepath.Dir(img)
	before := listDir(t, imgDir)
	a, b := t.TempDir(), t.TempDir()

	first := serveBriefly(t, bin, a, img)
	if !strings.Contains(first, "applied the ide boot fix") {
		t.Fatalf("first serve did not patch:\n%s", first)
	}
	ov := printedOverlay(t, first)
	if !filepath.IsAbs(ov) || !strings.HasPrefix(ov, stateDir()) {
		t.Errorf("overlay %s is not under the state directory %s", ov, stateDir())
	}
	link := filepath.Join(b, "alias.img")
	os.Symlink(img, link)
	for _, arg := range []string{img, link} {
		again := serveBriefly(t, bin, b, arg)
		if !strings.Contains(again, "already holds the ide boot fix") || printedOverlay(t, again) != ov {
			t.Errorf("serve %s from another directory did not find overlay %s:\n%s", arg, ov, again)
		}
	}
	if got := listDir(t, imgDir); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Errorf("the image directory changed: %v -> %v", before, got)
	}
	for _, d := range []string{a, b} {
		for _, n := range listDir(t, d) {
			if strings.HasSuffix(n, ".kvmify-overlay") {
				t.Errorf("an overlay was written into the working directory %s: %s", d, n)
			}
		}
	}

	// export finds the same overlay (what serve has served).
	out := filepath.Join(t.TempDir(), "o.raw")
	_, stderr, code := kv(t, bin, b, "export", img, out)
	if code != 0 || !strings.Contains(stderr, ov) {
		t.Errorf("export did not use %s: %d\n%s", ov, code, stderr)
	}
}

// TestExplicitRequestNotOverridden: --no-patch or a different --target
// against an overlay that holds a fix is refused with what to do, and
// nothing patched is written.
func TestExplicitRequestNotOverridden(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	dir := t.TempDir()
	ov := filepath.Join(dir, "w.ovl")
	out := filepath.Join(dir, "x.raw")
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--overlay", ov, "--target", "ide"); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	os.Remove(out)
	ovSum := testutil.FileSHA256(t, ov)
	_, stderr, code := kv(t, bin, "", "export", img, out, "--overlay", ov, "--no-patch")
	wantRefusal(t, "export --no-patch over a patched overlay", code, stderr, 1, "--no-patch", "--ephemeral", "another --overlay")
	_, stderr, code = kv(t, bin, "", "export", img, out, "--overlay", ov, "--target", "ahci")
	wantRefusal(t, "export --target ahci over an ide overlay", code, stderr, 1, "--target ahci", "holds the ide boot fix")
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused export wrote OUT")
	}
	if testutil.FileSHA256(t, ov) != ovSum {
		t.Error("the overlay changed")
	}
	// The same through the default overlay, as a user types it.
	serveBriefly(t, bin, "", img)
	_, stderr, code = kv(t, bin, "", "export", img, out, "--no-patch")
	wantRefusal(t, "export --no-patch after serve", code, stderr, 1, "--no-patch")
	// --ephemeral --no-patch exports the source as it is.
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch"); code != 0 {
		t.Fatalf("export --ephemeral --no-patch: %d\n%s", code, stderr)
	}
	if testutil.FileSHA256(t, out) != testutil.FileSHA256(t, img) {
		t.Error("--no-patch export differs from the source")
	}
}

// TestReportRewrittenAtExit: serve --report is rewritten at exit with the
// guest's writes in overlay_extents, and names the tool's version.
func TestReportRewrittenAtExit(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	bin := testutil.BuildKvmify(t)
	img := serveImage(t, "rep.img", 7)
	rep := filepath.Join(t.TempDir(), "report.json")
	sock := filepath.Join(t.TempDir(), "s.sock")
	cmd := exec.Command(bin, "serve", img, "--no-patch", "--ephemeral", "--unix", sock, "--report", rep)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitServing(t, &stderr)
	const off = 8 << 20
	if b, err := exec.Command(qemuIO, "-f", "raw", "-c", "write -P 7 8M 64k", "nbd+unix:///?socket="+sock).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, b)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	var r struct {
		Tool    string `json:"tool"`
		Extents []struct {
			Offset, Length int64
		} `json:"overlay_extents"`
	}
	b, _ := os.ReadFile(rep)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	found := false
	for _, e := range r.Extents {
		if e.Offset <= off && off < e.Offset+e.Length {
			found = true
		}
	}
	if !found {
		t.Errorf("the report lacks the guest's write at %d: %s", off, b)
	}
	ver, _, _ := kv(t, bin, "", "--version")
	if v := strings.TrimSpace(strings.TrimPrefix(ver, "kvmify version ")); r.Tool != "kvmify "+v || v == "" || strings.Contains(r.Tool, "(devel)") {
		t.Errorf("report tool %q, --version %q", r.Tool, ver)
	}
}

// TestInterruptExitStatus: a command interrupted by SIGINT exits 130
// (143 for SIGTERM), leaving no output file.
func TestInterruptExitStatus(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := filepath.Join(t.TempDir(), "big.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 30) // sparse; hashing it takes far longer than the test waits
	f.Close()
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		rep := filepath.Join(t.TempDir(), "r.json")
		cmd := exec.Command(bin, "serve", img, "--no-patch", "--ephemeral", "--unix", filepath.Join(t.TempDir(), "s.sock"), "--report", rep, "--hash")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Signal(c.sig)
		err := cmd.Wait()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != c.code {
			t.Errorf("%v: %v, want exit %d\n%s", c.sig, err, c.code, stderr.String())
		}
		if _, err := os.Stat(rep); err == nil {
			t.Errorf("%v: an interrupted run wrote the report", c.sig)
		}
	}
}

// TestPartitionMeansTheSame: --partition N names the same partition in
// plan, ls, cat and serve, and 0 means "choose" in all of them.
func TestPartitionMeansTheSame(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	for _, p := range []string{"0", "1"} {
		for _, args := range [][]string{
			{"plan", img, "--partition", p},
			{"ls", img, "--partition", p},
			{"cat", img, "boot.ini", "--partition", p},
			{"export", img, filepath.Join(t.TempDir(), "o.raw"), "--ephemeral", "--partition", p},
		} {
			if _, stderr, code := kv(t, bin, "", args...); code != 0 {
				t.Errorf("%s --partition %s: exit %d\n%s", args[0], p, code, stderr)
			}
		}
	}
	for _, args := range [][]string{{"plan", img, "--partition", "2"}, {"ls", img, "--partition", "2"}} {
		_, stderr, code := kv(t, bin, "", args...)
		wantRefusal(t, args[0]+" --partition 2", code, stderr, 2, "no such partition")
	}
}

// TestMountNoPatchWithoutWindows: mount --no-patch of a disk holding no
// Windows shows disk.img and report.json, without the SYSTEM files.
func TestMountNoPatchWithoutWindows(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if testutil.InCI() {
			t.Fatal("no /dev/fuse")
		}
		t.Skip("no /dev/fuse")
	}
	testutil.RequireTool(t, "fusermount3")
	bin := testutil.BuildKvmify(t)
	img := serveImage(t, "data.img", 9)
	mnt := t.TempDir()
	cmd := exec.Command(bin, "mount", img, mnt, "--no-patch", "--ephemeral")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	var names []string
	for i := 0; i < 100; i++ {
		if names = listDir(t, mnt); len(names) > 0 {
			break
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Join(names, ",") != "disk.img,report.json" {
		t.Fatalf("mount shows %v\n%s", names, stderr.String())
	}
	if testutil.FileSHA256(t, filepath.Join(mnt, "disk.img")) != testutil.FileSHA256(t, img) {
		t.Error("disk.img differs from the source")
	}
}
