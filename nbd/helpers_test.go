package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
)

// fileDisk is a writable test backend over a scratch file: it has every
// optional ability, so the server advertises everything.
type fileDisk struct {
	f    *os.File
	size int64
}

var (
	_ disk.Reader   = (*fileDisk)(nil)
	_ disk.Writer   = (*fileDisk)(nil)
	_ disk.Flusher  = (*fileDisk)(nil)
	_ disk.Trimmer  = (*fileDisk)(nil)
	_ disk.Zeroer   = (*fileDisk)(nil)
	_ MultiConnSafe = (*fileDisk)(nil)
	_ disk.Reader   = (*disk.Source)(nil)
)

// Linux fallocate mode bits.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

func openFileDisk(t testing.TB, path string) *fileDisk {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fileDisk{f: f, size: fi.Size()}
}

func (d *fileDisk) Size() int64 { return d.size }

func (d *fileDisk) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

func (d *fileDisk) check(off, n int64) error {
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return disk.ErrOutOfRange
	}
	return nil
}

func (d *fileDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

func (d *fileDisk) Flush() error { return d.f.Sync() }

func (d *fileDisk) Trim(off, n int64) error { return d.Zero(off, n) }

func (d *fileDisk) Zero(off, n int64) error {
	if err := d.check(off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return syscall.Fallocate(int(d.f.Fd()), fallocPunchHole|fallocKeepSize, off, n)
}

func (d *fileDisk) MultiConnSafe() bool { return true }

// patternBytes fills n bytes deterministically from seed.
func patternBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x6e6264))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// makeImage writes a file of deterministic pseudo-random content.
func makeImage(t testing.TB, name string, size int, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, patternBytes(seed, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServer serves exports on a unix socket in a temp dir and stops the
// server (checking Serve's result) when the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, srv, l)
	return sock
}

// serveOn serves srv on l until the test ends, then checks that Serve
// returns ErrServerClosed.
func serveOn(t testing.TB, srv *Server, l net.Listener) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
}

func oneExport(b disk.Reader, ro bool) *Server {
	return &Server{Exports: map[string]Export{"": {Name: "", Description: "test disk", Backend: b, ReadOnly: ro}}}
}

// client is a minimal NBD client for protocol-level tests: it negotiates
// with OPT_GO and then sends raw requests, including malformed ones.
type client struct {
	t     testing.TB
	c     net.Conn
	size  uint64
	flags uint16
}

func dialRaw(t testing.TB, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c
}

// goHandshake returns the bytes a client sends to choose export name with
// NBD_OPT_GO and no information requests.
func goHandshake(name string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, clientFixedNewstyle|clientNoZeroes)
	binary.Write(&b, binary.BigEndian, ihaveOpt)
	binary.Write(&b, binary.BigEndian, optGo)
	binary.Write(&b, binary.BigEndian, uint32(4+len(name)+2))
	binary.Write(&b, binary.BigEndian, uint32(len(name)))
	b.WriteString(name)
	binary.Write(&b, binary.BigEndian, uint16(0))
	return b.Bytes()
}

func dialGo(t testing.TB, sock, name string) *client {
	t.Helper()
	c := dialRaw(t, sock)
	var greet [serverGreetingLen]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(goHandshake(name)); err != nil {
		t.Fatal(err)
	}
	cl := &client{t: t, c: c}
	for {
		var h [optReplyHeaderLen]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatal(err)
		}
		typ := binary.BigEndian.Uint32(h[12:])
		data := make([]byte, binary.BigEndian.Uint32(h[16:]))
		if _, err := io.ReadFull(c, data); err != nil {
			t.Fatal(err)
		}
		switch {
		case typ == repAck:
			return cl
		case typ == repInfo && binary.BigEndian.Uint16(data) == infoExport:
			cl.size = binary.BigEndian.Uint64(data[2:])
			cl.flags = binary.BigEndian.Uint16(data[10:])
		case typ&repFlagError != 0:
			t.Fatalf("OPT_GO refused: %#x", typ)
		}
	}
}

func encodeRequest(typ Cmd, flags uint16, handle, off uint64, length uint32) []byte {
	b := make([]byte, requestLen)
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], uint16(typ))
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	return b
}

func (cl *client) send(typ Cmd, flags uint16, handle, off uint64, length uint32, payload []byte) {
	cl.t.Helper()
	if _, err := cl.c.Write(append(encodeRequest(typ, flags, handle, off, length), payload...)); err != nil {
		cl.t.Fatal(err)
	}
}

// reply reads one simple reply header.
func (cl *client) reply() (errno uint32, handle uint64, err error) {
	var h [simpleReplyLen]byte
	if _, err := io.ReadFull(cl.c, h[:]); err != nil {
		return 0, 0, err
	}
	if m := binary.BigEndian.Uint32(h[0:]); m != simpleRepMagic {
		return 0, 0, fmt.Errorf("reply magic %#x", m)
	}
	return binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:]), nil
}

// do sends one request and waits for its reply, returning the errno and any
// read data.
func (cl *client) do(typ Cmd, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	cl.t.Helper()
	cl.send(typ, flags, 7, off, length, payload)
	errno, h, err := cl.reply()
	if err != nil {
		cl.t.Fatalf("%v: %v", typ, err)
	}
	if h != 7 {
		cl.t.Fatalf("%v: reply handle %d, want 7", typ, h)
	}
	if typ != CmdRead || errno != 0 {
		return errno, nil
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(cl.c, data); err != nil {
		cl.t.Fatal(err)
	}
	return errno, data
}
