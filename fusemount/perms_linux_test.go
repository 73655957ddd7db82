//go:build linux

package fusemount_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmify/kvmify/fusemount"
	"github.com/kvmify/kvmify/internal/testutil"
)

// rwMemDisk is a writable disk in memory.
type rwMemDisk struct {
	mu sync.Mutex
	b  []byte
}

func (m *rwMemDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *rwMemDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

func (m *rwMemDisk) Size() int64 { return int64(len(m.b)) }

// head returns the disk's first n bytes.
func (m *rwMemDisk) head(n int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.b[:n])
}

// nobody is the uid and gid another local user runs as in these tests.
const nobody = "65534"

// asNobody runs a shell command as another user and returns its output and
// whether it succeeded.
func asNobody(t *testing.T, setpriv, cmd string) (string, bool) {
	t.Helper()
	out, err := exec.Command(setpriv, "--reuid="+nobody, "--regid="+nobody, "--clear-groups", "/bin/sh", "-c", cmd).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// mountForOthers mounts a writable disk where another user can reach the
// mount point (TempDir's own directories are private to the owner).
func mountForOthers(t *testing.T, allowOther bool) (img string, d *rwMemDisk) {
	t.Helper()
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user (setpriv)")
	}
	base := t.TempDir()
	for _, p := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d = &rwMemDisk{b: make([]byte, 1<<20)}
	copy(d.b, "original")
	m, err := fusemount.New(dir, fusemount.Options{Disk: d, AllowOther: allowOther})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount() })
	return filepath.Join(dir, "disk.img"), d
}

const (
	readCmd  = "dd if=%s of=/dev/null bs=512 count=1 status=none && echo READ-OK"
	writeCmd = "printf XXXXXXXX | dd of=%s bs=512 conv=notrunc status=none && echo WRITE-OK"
)

// TestOtherUserCannotWrite mounts with --allow-other: another user may
// read disk.img (its mode is 0644, owned by the mounting user) but not
// open it for writing, and the disk is unchanged.
func TestOtherUserCannotWrite(t *testing.T) {
	setpriv := testutil.RequireTool(t, "setpriv")
	img, d := mountForOthers(t, true)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk.img: %v", fi.Mode())
	if out, ok := asNobody(t, setpriv, strings.ReplaceAll(readCmd, "%s", img)); !ok || !strings.Contains(out, "READ-OK") {
		t.Fatalf("another user cannot read with --allow-other: %s", out)
	}
	out, ok := asNobody(t, setpriv, strings.ReplaceAll(writeCmd, "%s", img))
	if ok || !strings.Contains(out, "Permission denied") {
		t.Fatalf("another user wrote disk.img (or failed for another reason): %s", out)
	}
	if h := d.head(8); h != "original" {
		t.Fatalf("disk changed by another user: %q", h)
	}
	// The owner still may.
	if out, err := exec.Command("/bin/sh", "-c", strings.ReplaceAll(writeCmd, "%s", img)).CombinedOutput(); err != nil {
		t.Fatalf("owner cannot write: %s", out)
	}
}

// TestOtherUserShutOutByDefault mounts without --allow-other: another user
// can neither read nor write disk.img.
func TestOtherUserShutOutByDefault(t *testing.T) {
	setpriv := testutil.RequireTool(t, "setpriv")
	img, d := mountForOthers(t, false)
	for _, cmd := range []string{readCmd, writeCmd} {
		out, ok := asNobody(t, setpriv, strings.ReplaceAll(cmd, "%s", img))
		if ok || !strings.Contains(out, "Permission denied") {
			t.Fatalf("another user without --allow-other: %s", out)
		}
	}
	if h := d.head(8); h != "original" {
		t.Fatalf("disk changed by another user: %q", h)
	}
}
