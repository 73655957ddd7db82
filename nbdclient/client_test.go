package nbdclient_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/nbdclient"
)

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// startServer runs a server command until the test ends and waits for the
// socket (or TCP port) to accept.
func startServer(t *testing.T, network, addr string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; i < 200; i++ {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not start: %s", name, stderr.String())
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func checkReads(t *testing.T, c *nbdclient.Client, want []byte) {
	t.Helper()
	if c.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", c.Size(), len(want))
	}
	got, err := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	// A read larger than one request, concurrent small reads, and the end.
	big := make([]byte, 9<<20+17)
	if n, err := c.ReadAt(big, 123); err != nil || n != len(big) || !bytes.Equal(big, want[123:123+len(big)]) {
		t.Fatalf("big read: %d, %v", n, err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := make([]byte, 4096)
			for i := 0; i < 50; i++ {
				off := int64((g*131 + i*977) * 4096 % (len(want) - 4096))
				if _, err := c.ReadAt(p, off); err != nil || !bytes.Equal(p, want[off:off+4096]) {
					t.Errorf("read at %d: %v", off, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	p := make([]byte, 100)
	if n, err := c.ReadAt(p, int64(len(want)-40)); n != 40 || err != io.EOF {
		t.Fatalf("read past the end: %d, %v", n, err)
	}
}

func TestQemuNBD(t *testing.T) {
	testutil.RequireTool(t, "qemu-nbd")
	raw, want := randomFile(t, 16<<20)
	sum := testutil.FileSHA256(t, raw)
	sock := filepath.Join(t.TempDir(), "q.sock")
	startServer(t, "unix", sock, "qemu-nbd", "--read-only", "--persistent", "--shared=2", "-f", "raw", "-x", "disk", "-k", sock, raw)
	c, err := nbdclient.Dial("nbd+unix:///disk?socket=" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkReads(t, c, want)
	if _, err := nbdclient.Dial("nbd+unix:///nosuch?socket=" + sock); err == nil {
		t.Fatal("a missing export opened")
	}
	if testutil.FileSHA256(t, raw) != sum {
		t.Fatal("the served file changed")
	}
}

func TestNbdkitTCP(t *testing.T) {
	testutil.RequireTool(t, "nbdkit")
	raw, want := randomFile(t, 16<<20)
	port := freePort(t)
	startServer(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port), "nbdkit", "--foreground", "--readonly", "-i", "127.0.0.1", "-p", fmt.Sprint(port), "file", raw)
	c, err := nbdclient.Dial(fmt.Sprintf("nbd://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkReads(t, c, want)
}

// TestServerErrorsAreErrors serves a disk whose reads all fail with EIO
// (nbdkit's error filter): the client returns an error naming the offset,
// never bytes.
func TestServerErrorsAreErrors(t *testing.T) {
	testutil.RequireTool(t, "nbdkit")
	raw, _ := randomFile(t, 4<<20)
	sock := filepath.Join(t.TempDir(), "e.sock")
	startServer(t, "unix", sock, "nbdkit", "--foreground", "--readonly", "-U", sock,
		"--filter=error", "file", raw, "error-pread=EIO", "error-pread-rate=100%")
	c, err := nbdclient.Dial("nbd+unix:///?socket=" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := make([]byte, 4096)
	_, err = c.ReadAt(p, 1<<20)
	var ne *nbdclient.Error
	if !errors.As(err, &ne) || ne.Errno != 5 || ne.Offset != 1<<20 {
		t.Fatalf("read from a failing server: %v", err)
	}
	t.Log(err)
}

func TestBadURIs(t *testing.T) {
	for _, u := range []string{"nbds://example/x", "nbd+unix:///x", "nbd://127.0.0.1:1/x"} {
		if _, err := nbdclient.Dial(u); err == nil {
			t.Errorf("%s opened", u)
		}
	}
}
