package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

const serveImageSize = 16 << 20

// serveImage writes a deterministic pseudo-random test image.
func serveImage(t *testing.T, name string, seed uint64) string {
	t.Helper()
	r := mrand.New(mrand.NewPCG(seed, 0x5e7e))
	b := make([]byte, serveImageSize)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lockedBuffer is written by runServe while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serving is a runServe call in progress.
type serving struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	stdout lockedBuffer
	stderr lockedBuffer
	uri    string
}

// startServe runs runServe in the background and waits until it printed
// its URI (after the socket listens).
func startServe(t *testing.T, opts serveOptions, image string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- runServe(ctx, opts, []string{image}, &s.stdout, &s.stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out := s.stdout.String(); strings.HasSuffix(out, "\n") {
			s.uri = strings.TrimSpace(out)
			break
		}
		select {
		case err := <-s.done:
			t.Fatalf("runServe ended early: %v\n%s", err, s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("runServe printed no URI\n%s", s.stderr.String())
		}
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop cancels the server (as SIGINT does) and returns runServe's result.
func (s *serving) stop() error {
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		s.t.Fatalf("runServe did not return after cancel\n%s", s.stderr.String())
		return nil
	}
}

type serveInfo struct {
	Size     int64 `json:"export-size"`
	ReadOnly bool  `json:"is_read_only"`
	CanFlush bool  `json:"can_flush"`
	CanFUA   bool  `json:"can_fua"`
	CanTrim  bool  `json:"can_trim"`
	CanZero  bool  `json:"can_zero"`
}

func nbdinfoOf(t *testing.T, uri string) serveInfo {
	t.Helper()
	out := run(t, testutil.RequireTool(t, "nbdinfo"), "--json", uri)
	var v struct{ Exports []serveInfo }
	if err := json.Unmarshal(out, &v); err != nil || len(v.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	return v.Exports[0]
}

func fileBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeOverlayRealClients serves an image through a persistent overlay
// to nbdinfo, qemu-img, qemu-io and nbdcopy, restarts on the same overlay,
// and checks the source never changed.
func TestServeOverlayRealClients(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	qemuIO := testutil.RequireTool(t, "qemu-io")
	nbdcopy := testutil.RequireTool(t, "nbdcopy")
	img := serveImage(t, "src.img", 1)
	srcSum := testutil.FileSHA256(t, img)
	dir := t.TempDir()
	ov := filepath.Join(dir, "src.ov")
	opts := serveOptions{Unix: filepath.Join(dir, "s.sock")}
	opts.patch.Patch.NoPatch = true
	opts.patch.Overlay = ov

	s := startServe(t, opts, img)
	if want := "nbd+unix:///?socket=" + opts.Unix; s.uri != want {
		t.Errorf("printed URI %q, want %q", s.uri, want)
	}
	if want := "file.driver=nbd,file.server.type=unix,file.server.path=" + opts.Unix + " -device"; !strings.Contains(s.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, s.stderr.String())
	}
	if e := nbdinfoOf(t, s.uri); e.Size != serveImageSize || e.ReadOnly || !e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero {
		t.Errorf("nbdinfo: %+v", e)
	}
	conv := filepath.Join(dir, "conv.raw")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", s.uri, conv)
	if testutil.FileSHA256(t, conv) != srcSum {
		t.Fatal("qemu-img convert of the fresh export differs from the source")
	}
	run(t, qemuIO, "-f", "raw",
		"-c", "write -P 0x11 1M 256k", "-c", "write -f -P 0x22 2M 4k", "-c", "flush",
		"-c", "discard 1M 64k", "-c", "write -z 3M 512k",
		"-c", "read -P 0 1M 64k", "-c", "read -P 0x11 1088k 192k", "-c", "read -P 0x22 2M 4k",
		"-c", "read -P 0 3M 512k", s.uri)

	want := fileBytes(t, img)
	copy(want[1<<20:], bytes.Repeat([]byte{0x11}, 256<<10))
	clear(want[1<<20 : 1<<20+64<<10])
	copy(want[2<<20:], bytes.Repeat([]byte{0x22}, 4096))
	clear(want[3<<20 : 3<<20+512<<10])
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", s.uri, filepath.Join(dir, "after-io.raw"))
	if !bytes.Equal(fileBytes(t, filepath.Join(dir, "after-io.raw")), want) {
		t.Fatal("export after qemu-io differs from the expected content")
	}

	other := serveImage(t, "other.img", 2)
	run(t, nbdcopy, other, s.uri)
	back := filepath.Join(dir, "back.raw")
	run(t, nbdcopy, s.uri, back)
	if testutil.FileSHA256(t, back) != testutil.FileSHA256(t, other) {
		t.Fatal("nbdcopy into and out of the export does not round-trip")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("runServe: %v\n%s", err, s.stderr.String())
	}
	if testutil.FileSHA256(t, img) != srcSum {
		t.Fatal("the source image changed")
	}

	// Restart on the same overlay: everything written is still there.
	s = startServe(t, opts, img)
	again := filepath.Join(dir, "again.raw")
	run(t, nbdcopy, s.uri, again)
	if testutil.FileSHA256(t, again) != testutil.FileSHA256(t, other) {
		t.Fatal("after restart the overlay lost writes")
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if testutil.FileSHA256(t, img) != srcSum {
		t.Fatal("the source image changed")
	}
}

func TestServeReadOnly(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	img := serveImage(t, "ro.img", 3)
	srcSum := testutil.FileSHA256(t, img)
	for _, ephemeral := range []bool{false, true} {
		dir := t.TempDir()
		opts := serveOptions{Unix: filepath.Join(dir, "s.sock"), ReadOnly: true}
		opts.patch.Patch.NoPatch = true
		opts.patch.Ephemeral = ephemeral
		s := startServe(t, opts, img)
		if e := nbdinfoOf(t, s.uri); !e.ReadOnly || e.Size != serveImageSize {
			t.Errorf("ephemeral=%v: nbdinfo %+v, want read-only", ephemeral, e)
		}
		out, err := exec.Command(qemuIO, "-f", "raw", "-c", "write -P 1 0 4k", s.uri).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "failed") {
			t.Errorf("write to a read-only export succeeded: %s", out)
		}
		if !ephemeral && !strings.Contains(s.stderr.String(), "no overlay") {
			t.Errorf("--read-only --no-patch did not serve the source directly:\n%s", s.stderr.String())
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat("ro.img.kvmify-overlay"); err == nil {
		t.Error("a read-only serve created a default overlay")
	}
	if testutil.FileSHA256(t, img) != srcSum {
		t.Fatal("the source image changed")
	}
}

// writeTestCert writes a self-signed localhost certificate and key, and a
// libnbd tls-certificates directory trusting it.
func writeTestCert(t *testing.T) (cert, key, caDir string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	caDir = t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, key = filepath.Join(caDir, "server.pem"), filepath.Join(caDir, "server.key")
	for p, b := range map[string][]byte{
		cert: certPEM, key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		filepath.Join(caDir, "ca-cert.pem"): certPEM,
	} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key, caDir
}

func TestServeTLSRequired(t *testing.T) {
	nbdinfo := testutil.RequireTool(t, "nbdinfo")
	img := serveImage(t, "tls.img", 4)
	cert, key, caDir := writeTestCert(t)
	dir := t.TempDir()
	opts := serveOptions{Unix: filepath.Join(dir, "s.sock"), TLSCert: cert, TLSKey: key, TLSRequired: true}
	opts.patch.Patch.NoPatch = true
	opts.patch.Ephemeral = true
	s := startServe(t, opts, img)
	if !strings.HasPrefix(s.uri, "nbds+unix://") {
		t.Errorf("URI %q does not say TLS", s.uri)
	}
	out := strings.TrimSpace(string(run(t, nbdinfo, "--size", s.uri+"&tls-certificates="+caDir)))
	if out != "16777216" {
		t.Errorf("nbdinfo --size over TLS: %q", out)
	}
	plain := "nbd+unix:///?socket=" + opts.Unix
	if b, err := exec.Command(nbdinfo, "--size", plain).CombinedOutput(); err == nil {
		t.Errorf("plaintext client served with --tls-required: %s", b)
	}
}

func TestServeTCP(t *testing.T) {
	img := serveImage(t, "tcp.img", 5)
	opts := serveOptions{Listen: "127.0.0.1:0"}
	opts.patch.Patch.NoPatch = true
	opts.patch.Ephemeral = true
	s := startServe(t, opts, img)
	if !strings.HasPrefix(s.uri, "nbd://127.0.0.1:") {
		t.Fatalf("URI %q", s.uri)
	}
	if e := nbdinfoOf(t, s.uri); e.Size != serveImageSize {
		t.Errorf("nbdinfo over TCP: %+v", e)
	}
}

func TestListenAddress(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:10809", "localhost:1234": "localhost:1234",
		"[::1]": "[::1]:10809", "::1": "[::1]:10809", ":7000": ":7000", "[::]:10810": "[::]:10810",
	} {
		if got := listenAddress(in); got != want {
			t.Errorf("listenAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestServeSocketFiles(t *testing.T) {
	img := serveImage(t, "sock.img", 6)
	dir := t.TempDir()

	// A socket left by a killed server (nothing listens) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	opts := serveOptions{Unix: stale}
	opts.patch.Patch.NoPatch, opts.patch.Ephemeral = true, true
	s := startServe(t, opts, img)

	// A live socket and a regular file are refused.
	err = runServe(context.Background(), opts, []string{img}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "listening") {
		t.Errorf("serving on a live socket: %v", err)
	}
	s.stop()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file not removed at exit: %v", err)
	}
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep"), 0o644)
	opts.Unix = regular
	if err := runServe(context.Background(), opts, []string{img}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("serving on a regular file's path succeeded")
	}
	if string(fileBytes(t, regular)) != "keep" {
		t.Error("the regular file was touched")
	}
}

// TestServeBinary drives the built CLI like a user: exit codes, help, and
// a clean exit 0 on SIGTERM with the overlay flushed.
func TestServeBinary(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	img := serveImage(t, "bin.img", 7)
	srcSum := testutil.FileSHA256(t, img)
	dir := t.TempDir()

	help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(help), "Exit status") {
		t.Errorf("serve --help: %v\n%s", err, help)
	}
	for _, args := range [][]string{
		{"serve"},
		{"serve", img, "extra"},
		{"serve", img, "--unix", "a", "--listen", "b"},
		{"serve", img, "--tls-cert", "c"},
		{"serve", img, "--tls-required"},
		{"serve", img, "--ephemeral", "--overlay", "x"},
	} {
		err := exec.Command(bin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Errorf("kvmify %v: %v, want exit %d", args, err, exitUsage)
		}
	}
	err = exec.Command(bin, "serve", filepath.Join(dir, "missing.img"), "--no-patch", "--unix", filepath.Join(dir, "m.sock")).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Errorf("serving a missing image: %v, want exit %d", err, exitFailure)
	}

	sock := filepath.Join(dir, "s.sock")
	ov := filepath.Join(dir, "bin.ov")
	cmd := exec.Command(bin, "serve", img, "--no-patch", "--overlay", ov, "--unix", sock)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	uri := "nbd+unix:///?socket=" + sock
	for i := 0; exec.Command("nbdinfo", "--size", uri).Run() != nil; i++ {
		if i > 200 {
			t.Fatalf("server did not come up:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Unflushed writes: the shutdown flush must make them durable.
	run(t, testutil.RequireTool(t, "qemu-io"), "-f", "raw", "-c", "write -P 0x77 4M 1M", uri)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, stderr.String())
	}
	if testutil.FileSHA256(t, img) != srcSum {
		t.Fatal("the source image changed")
	}
	s := func() *serving {
		opts := serveOptions{Unix: filepath.Join(dir, "s2.sock")}
		opts.patch.Patch.NoPatch, opts.patch.Overlay = true, ov
		return startServe(t, opts, img)
	}()
	run(t, "qemu-io", "-f", "raw", "-c", "read -P 0x77 4M 1M", s.uri)
}
