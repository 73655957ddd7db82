package main

// Tests of the promises of issue "keep every promise on every path", each
// driving the built binary as a user would: no output is ever an input, a
// refusal comes before anything is created, an explicit --no-patch or
// --target is never overridden, and the default overlay is found from any
// directory.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// kv runs the binary in dir (the test's working directory when "") and
// returns its stdout, stderr and exit status; a run that does not end
// within a minute (a refusal that did not happen) is killed.
func kv(t *testing.T, bin, dir string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// stateDir is where the binary keeps default overlays in these tests.
func stateDir() string {
	return filepath.Join(os.Getenv("XDG_STATE_HOME"), "kvmify", "overlays")
}

// listDir names the entries of dir ("" for a missing dir).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// overlaysOf lists the default overlays (and temporary files) made for the
// image named base.
func overlaysOf(t *testing.T, base string) []string {
	t.Helper()
	var out []string
	for _, n := range listDir(t, stateDir()) {
		if strings.Contains(n, base) {
			out = append(out, n)
		}
	}
	return out
}

// writableCopy copies img to a new file in its own directory.
func writableCopy(t *testing.T, img, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	testutil.CopyFile(t, img, p)
	return p
}

// patchBytes writes b at off in the file at path.
func patchBytes(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func wantRefusal(t *testing.T, what string, code int, stderr string, wantCode int, wantMsg ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d\n%s", what, code, wantCode, stderr)
		return
	}
	for _, m := range wantMsg {
		if !strings.Contains(stderr, m) {
			t.Errorf("%s: message lacks %q:\n%s", what, m, stderr)
		}
	}
}

// TestOutputNeverAnInput: --report, export OUT and hive recover -o are
// refused when they name a file kvmify reads — the source (directly, by
// symlink, by hard link), the overlay in use, an auto-discovered hive log —
// with or without --force; an existing file needs --force.
func TestOutputNeverAnInput(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := serveImage(t, "plain.img", 41)
	sum := testutil.FileSHA256(t, img)
	dir := filepath.Dir(img)
	link := filepath.Join(dir, "link.img")
	os.Symlink(img, link)
	hard := filepath.Join(dir, "hard.img")
	if err := os.Link(img, hard); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.raw")
	for _, rep := range []string{img, link, hard} {
		for _, force := range []bool{false, true} {
			args := []string{"export", img, out, "--ephemeral", "--no-patch", "--report", rep}
			if force {
				args = append(args, "--force")
			}
			_, stderr, code := kv(t, bin, "", args...)
			wantRefusal(t, "export --report "+rep, code, stderr, 2, "it is the source image", "--force does not change this")
		}
		_, stderr, code := kv(t, bin, "", "export", img, rep, "--ephemeral", "--no-patch", "--force")
		wantRefusal(t, "export OUT="+rep, code, stderr, 2, "it is the source image")
	}
	if testutil.FileSHA256(t, img) != sum {
		t.Fatal("the source image changed")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused export wrote OUT")
	}

	// The overlay in use.
	ov := filepath.Join(t.TempDir(), "x.ovl")
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--overlay", ov, "--no-patch"); code != 0 {
		t.Fatalf("export: %d\n%s", code, stderr)
	}
	ovSum := testutil.FileSHA256(t, ov)
	os.Remove(out)
	_, stderr, code := kv(t, bin, "", "export", img, out, "--overlay", ov, "--no-patch", "--report", ov, "--force")
	wantRefusal(t, "--report = overlay", code, stderr, 2, "the overlay in use")
	if testutil.FileSHA256(t, ov) != ovSum {
		t.Error("the overlay changed")
	}

	// An existing report: refused without --force, replaced with it.
	rep := filepath.Join(t.TempDir(), "report.json")
	os.WriteFile(rep, []byte("keep"), 0o644)
	_, stderr, code = kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch", "--report", rep)
	wantRefusal(t, "existing report", code, stderr, 1, "already exists", "--force")
	if b, _ := os.ReadFile(rep); string(b) != "keep" {
		t.Error("an existing report was replaced without --force")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("OUT written although the report path was refused")
	}
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch", "--report", rep, "--force"); code != 0 {
		t.Fatalf("export --force: %d\n%s", code, stderr)
	}
	// An existing OUT: refused without --force, replaced with it.
	_, stderr, code = kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch")
	wantRefusal(t, "existing OUT", code, stderr, 1, "already exists", "--force")
	os.WriteFile(out, []byte("old"), 0o644)
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch", "--force", "--report", filepath.Join(t.TempDir(), "r.json")); code != 0 {
		t.Fatalf("export --force over OUT: %d\n%s", code, stderr)
	}
	if testutil.FileSHA256(t, out) != sum {
		t.Error("export --force did not replace OUT with the disk")
	}
	var r struct{ Source string }
	if b, _ := os.ReadFile(rep); json.Unmarshal(b, &r) != nil || r.Source != img {
		t.Errorf("report not replaced: %s", b)
	}

	// A disk without Windows is exported as it is, with a message.
	plainOut := filepath.Join(t.TempDir(), "plain.raw")
	if _, stderr, code := kv(t, bin, "", "export", img, plainOut, "--ephemeral"); code != 0 || !strings.Contains(stderr, "no Windows install found") {
		t.Errorf("export of a disk without Windows: %d\n%s", code, stderr)
	}

	// hive recover: an auto-discovered log is an input too.
	hdir := t.TempDir()
	hive := filepath.Join(hdir, "SYSTEM")
	testutil.CopyFile(t, testutil.CorpusFile(t, "win10-1709-x64.SYSTEM"), hive)
	testutil.CopyFile(t, testutil.CorpusFile(t, "win10-1709-x64.SYSTEM.LOG1"), hive+".LOG1")
	logSum := testutil.FileSHA256(t, hive+".LOG1")
	_, stderr, code = kv(t, bin, "", "hive", "recover", hive, "-o", hive+".LOG1", "--force")
	wantRefusal(t, "recover -o FILE.LOG1", code, stderr, 2, "transaction log")
	if testutil.FileSHA256(t, hive+".LOG1") != logSum {
		t.Fatal("hive recover overwrote the log it reads")
	}
	os.Symlink(hive+".LOG1", filepath.Join(hdir, "alias"))
	_, stderr, code = kv(t, bin, "", "hive", "recover", hive, "-o", filepath.Join(hdir, "alias"), "--force")
	wantRefusal(t, "recover -o symlink to log", code, stderr, 2, "transaction log")
}

// TestRefusedBeforeCreating: a missing mount point, a busy socket, an empty
// or truncated image are refused before any overlay exists; nothing is left.
func TestRefusedBeforeCreating(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, "xp-sp3-x86.SYSTEM")
	copyImg := writableCopy(t, img, "busy.img")
	// Each refused run starts in an empty directory, which must stay
	// empty, as must the image's directory and the default overlays.
	nothingLeft := func(what, image string, cwd string) {
		t.Helper()
		if o := overlaysOf(t, filepath.Base(image)); len(o) != 0 {
			t.Errorf("%s left %v in %s", what, o, stateDir())
		}
		if l := listDir(t, cwd); len(l) != 0 {
			t.Errorf("%s left %v in the working directory", what, l)
		}
		if l := listDir(t, filepath.Dir(image)); len(l) != 1 {
			t.Errorf("%s left %v beside the image", what, l)
		}
	}

	cwd := t.TempDir()
	_, stderr, code := kv(t, bin, cwd, "mount", copyImg, filepath.Join(t.TempDir(), "missing"))
	wantRefusal(t, "mount onto a missing dir", code, stderr, 1, "missing", "mkdir")
	nothingLeft("mount onto a missing dir", copyImg, cwd)

	// A busy socket: a listener the test holds.
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := netListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cwd = t.TempDir()
	_, stderr, code = kv(t, bin, cwd, "serve", copyImg, "--unix", sock)
	wantRefusal(t, "serve onto a busy socket", code, stderr, 1, "another server is listening")
	nothingLeft("serve onto a busy socket", copyImg, cwd)

	empty := filepath.Join(t.TempDir(), "empty.img")
	os.WriteFile(empty, nil, 0o644)
	cwd = t.TempDir()
	_, stderr, code = kv(t, bin, cwd, "serve", empty, "--unix", filepath.Join(t.TempDir(), "e.sock"))
	wantRefusal(t, "serve an empty image", code, stderr, 1, "is empty")
	nothingLeft("serving an empty image", empty, cwd)

	trunc := writableCopy(t, img, "trunc.img")
	if err := os.Truncate(trunc, partStart+64<<10); err != nil {
		t.Fatal(err)
	}
	cwd = t.TempDir()
	_, stderr, code = kv(t, bin, cwd, "serve", trunc, "--unix", filepath.Join(t.TempDir(), "t.sock"))
	wantRefusal(t, "serve a truncated image", code, stderr, 1, "ends past the disk", "--no-patch")
	nothingLeft("serving a truncated image", trunc, cwd)
}

// TestBitLockerRefused: a BitLocker volume is named as such by inspect and
// refused by serve, export and ls (not served as "no Windows").
func TestBitLockerRefused(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := writableCopy(t, winDisk(t, "xp-sp3-x86.SYSTEM"), "bl.img")
	patchBytes(t, img, partStart+3, []byte("-FVE-FS-"))
	sum := testutil.FileSHA256(t, img)

	stdout, stderr, code := kv(t, bin, "", "inspect", "--json", img)
	if code != 0 || !strings.Contains(stdout, `"bitlocker": true`) || !strings.Contains(stdout, `"fs": "BitLocker"`) {
		t.Errorf("inspect: %d\n%s%s", code, stdout, stderr)
	}
	out := filepath.Join(t.TempDir(), "o.raw")
	cwd := t.TempDir()
	for _, args := range [][]string{
		{"serve", img, "--unix", filepath.Join(t.TempDir(), "s.sock")},
		{"export", img, out, "--ephemeral"},
		{"plan", img},
		{"ls", img},
	} {
		_, stderr, code := kv(t, bin, cwd, args...)
		wantRefusal(t, args[0], code, stderr, 1, "BitLocker", "manage-bde -off")
	}
	if o := append(overlaysOf(t, "bl.img"), listDir(t, cwd)...); len(o) != 0 {
		t.Errorf("refused BitLocker serve left %v", o)
	}
	if _, stderr, code := kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch"); code != 0 {
		t.Errorf("export --no-patch of a BitLocker disk: %d\n%s", code, stderr)
	}
	if testutil.FileSHA256(t, img) != sum {
		t.Fatal("the source image changed")
	}
}

// damageHive overwrites the first hive bin header of the SYSTEM hive in img.
func damageHive(t *testing.T, img string) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The hive's first bin header follows its 4 KiB base block.
	for regf := 0; ; regf++ {
		next := bytes.Index(b[regf:], []byte("regf"))
		if next < 0 {
			t.Fatal("no hive in the test disk")
		}
		regf += next
		if regf+4100 <= len(b) && bytes.Equal(b[regf+4096:regf+4100], []byte("hbin")) {
			patchBytes(t, img, int64(regf+4096), []byte("XXXX"))
			return
		}
	}
}

// damageMFT overwrites the signature of the volume's first MFT record.
func damageMFT(t *testing.T, img string) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	boot := make([]byte, 512)
	_, err = f.ReadAt(boot, partStart)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	cluster := int64(binary.LittleEndian.Uint16(boot[0x0b:])) * int64(boot[0x0d])
	mft := partStart + int64(binary.LittleEndian.Uint64(boot[0x30:]))*cluster
	patchBytes(t, img, mft, []byte("XXXX"))
}

// TestDamagedWindowsRefused: a Windows volume whose hive or NTFS metadata
// cannot be read is refused by serve and export with plan's error (exit 1),
// never served unpatched as "no Windows", unless --no-patch.
func TestDamagedWindowsRefused(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	good := winDisk(t, "xp-sp3-x86.SYSTEM")
	for _, c := range []struct {
		name   string
		damage func(*testing.T, string)
	}{{"hive bin header", damageHive}, {"MFT record", damageMFT}} {
		img := writableCopy(t, good, "dmg.img")
		c.damage(t, img)
		_, planErr, code := kv(t, bin, "", "plan", img)
		if code != 1 {
			t.Fatalf("%s: plan: exit %d\n%s", c.name, code, planErr)
		}
		planMsg := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(planErr, "\n", 2)[0], "kvmify: "))
		out := filepath.Join(t.TempDir(), "o.raw")
		cwd := t.TempDir()
		for _, args := range [][]string{
			{"serve", img, "--unix", filepath.Join(t.TempDir(), "s.sock")},
			{"export", img, out, "--ephemeral"},
		} {
			_, stderr, code := kv(t, bin, cwd, args...)
			wantRefusal(t, c.name+": "+args[0], code, stderr, 1, planMsg, "--no-patch")
			if strings.Contains(stderr, "no Windows install found") {
				t.Errorf("%s: %s says no Windows: %s", c.name, args[0], stderr)
			}
		}
		if o := append(overlaysOf(t, "dmg.img"), listDir(t, cwd)...); len(o) != 0 {
			t.Errorf("%s: refused serve left %v", c.name, o)
		}
		if _, stderr, code := kv(t, bin, "", "export", img, out, "--ephemeral", "--no-patch"); code != 0 {
			t.Errorf("%s: export --no-patch: %d\n%s", c.name, code, stderr)
		}
	}
}

func netListenUnix(path string) (net.Listener, error) { return net.Listen("unix", path) }
