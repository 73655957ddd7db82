package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// slowDisk delays reads so requests are still in flight at shutdown.
type slowDisk struct {
	*fileDisk
	delay time.Duration
}

func (d slowDisk) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(d.delay)
	return d.fileDisk.ReadAt(p, off)
}

func TestShutdownAnswersInFlight(t *testing.T) {
	const size = 1 << 20
	path := makeImage(t, "sd.img", size, 51)
	img := patternBytes(51, size)
	srv := oneExport(slowDisk{openFileDisk(t, path), 300 * time.Millisecond}, false)
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	cl := dialGo(t, sock, "")
	idle := dialGo(t, sock, "") // connected, nothing in flight
	const n = 5
	for i := 0; i < n; i++ {
		cl.send(CmdRead, 0, uint64(i), uint64(i)*4096, 4096, nil)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	got := map[uint64]bool{}
	for i := 0; i < n; i++ {
		errno, h, err := cl.reply()
		if err != nil || errno != 0 {
			t.Fatalf("reply %d during shutdown: errno %d, %v", i, errno, err)
		}
		data := make([]byte, 4096)
		if _, err := io.ReadFull(cl.c, data); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, img[h*4096:(h+1)*4096]) {
			t.Fatalf("reply for handle %d has wrong data", h)
		}
		got[h] = true
	}
	if len(got) != n {
		t.Fatalf("got replies for %v", got)
	}
	for _, c := range []*client{cl, idle} {
		if !connClosed(t, c) {
			t.Error("connection still open after shutdown")
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}
