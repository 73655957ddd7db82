package qcow2

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/nbd"
)

// serve serves img read-only over NBD on a unix socket until the test ends
// and returns its URI.
func serve(t *testing.T, img *Image) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Exports: map[string]nbd.Export{"": {Backend: img, ReadOnly: true}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, nbd.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return "nbd+unix:///?socket=" + sock
}

// TestNBD copies a compressed image with a backing file through kvmify's
// NBD server with nbdcopy (block status and sendfile paths included) and
// compares it with the oracle; a truncated image makes nbdcopy fail (EIO)
// instead of copying zeros.
func TestNBD(t *testing.T) {
	nbdcopy := testutil.RequireTool(t, "nbdcopy")
	dir, raw := testDisk(t)
	base := filepath.Join(dir, "base.qcow2")
	testutil.QemuImg(t, "convert", "-c", "-O", "qcow2", raw, base)
	top := filepath.Join(dir, "top.qcow2")
	testutil.QemuImg(t, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
	qemuIO := testutil.RequireTool(t, "qemu-io")
	if out, err := exec.Command(qemuIO, "-f", "qcow2", "-c", "write -P 0x77 2M 3M", top).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	want, _ := testutil.OracleSHA256(t, top)
	img, err := Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	out := filepath.Join(dir, "copy.raw")
	if b, err := exec.Command(nbdcopy, serve(t, img), out).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v\n%s", err, b)
	}
	if got := testutil.FileSHA256(t, out); got != want {
		t.Fatalf("nbdcopy through kvmify: sha256 %s, qemu-img gives %s", got, want)
	}

	plain := filepath.Join(dir, "plain.qcow2")
	testutil.QemuImg(t, "convert", "-O", "qcow2", raw, plain)
	fi, _ := os.Stat(plain)
	os.Truncate(plain, fi.Size()/2)
	cut, err := Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	b, err := exec.Command(nbdcopy, serve(t, cut), "null:").CombinedOutput()
	if err == nil {
		t.Fatal("nbdcopy of a truncated qcow2 succeeded")
	}
	if !strings.Contains(string(b), "Input/output error") {
		t.Errorf("nbdcopy failed without EIO: %s", b)
	}
	t.Logf("nbdcopy: %s", strings.TrimSpace(string(b)))
}
