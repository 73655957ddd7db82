//go:build linux

package fusemount_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmify/kvmify/fusemount"
)

type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) { return copy(p, m[off:]), nil }
func (m memDisk) Size() int64                             { return int64(len(m)) }

func TestMain(m *testing.M) {
	// Child mode: mount and wait to be killed, leaving a stale mount behind.
	if dir := os.Getenv("FUSEMOUNT_TEST_CHILD"); dir != "" {
		mnt, err := fusemount.New(dir, fusemount.Options{Disk: memDisk(make([]byte, 4096))})
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("mounted\n")
		mnt.Wait()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockedBuffer is a bytes.Buffer a child process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func TestStaleMountIsNamed(t *testing.T) {
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o755)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "FUSEMOUNT_TEST_CHILD="+dir)
	var out lockedBuffer
	child.Stdout = &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	for i := 0; i < 200 && !bytes.Contains(out.Bytes(), []byte("mounted")); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if !bytes.Contains(out.Bytes(), []byte("mounted")) {
		child.Process.Kill()
		t.Fatal("child did not mount")
	}
	child.Process.Kill() // SIGKILL: no unmount
	child.Wait()
	_, err := fusemount.New(dir, fusemount.Options{Disk: memDisk(make([]byte, 4096))})
	if !errors.Is(err, fusemount.ErrStaleMount) {
		t.Fatalf("mount over a stale mount: got %v, want ErrStaleMount", err)
	}
	t.Log(err)
}
