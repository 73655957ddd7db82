package nbd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// selfSignedTLS makes a self-signed certificate for localhost and writes it
// as libnbd expects in a tls-certificates directory (ca-cert.pem).
func selfSignedTLS(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "ca-cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, dir
}

func TestTLSWithNbdinfo(t *testing.T) {
	testutil.RequireTool(t, "nbdinfo")
	cfg, certDir := selfSignedTLS(t)
	for _, required := range []bool{false, true} {
		name := map[bool]string{false: "optional", true: "required"}[required]
		t.Run(name, func(t *testing.T) {
			path := makeImage(t, "tls.img", 1<<20, 21)
			srv := oneExport(openFileDisk(t, path), false)
			srv.TLSConfig = cfg
			srv.TLSRequired = required
			sock := startServer(t, srv)
			uri := "nbds+unix:///?socket=" + sock + "&tls-certificates=" + certDir
			if e := nbdinfoJSON(t, uri); e.Size != 1<<20 || !e.CanFlush {
				t.Errorf("over TLS nbdinfo reports %+v", e)
			}
			out, err := exec.Command("nbdinfo", "--size", unixURI(sock)).CombinedOutput()
			if required && err == nil {
				t.Errorf("plaintext client accepted with TLS required: %s", out)
			}
			if !required && err != nil {
				t.Errorf("plaintext client refused with optional TLS: %v %s", err, out)
			}
		})
	}
}

func TestTLSRequiredRefusesOptions(t *testing.T) {
	cfg, _ := selfSignedTLS(t)
	path := makeImage(t, "tlsr.img", 1<<20, 22)
	srv := oneExport(openFileDisk(t, path), false)
	srv.TLSConfig = cfg
	srv.TLSRequired = true
	sock := startServer(t, srv)
	c := dialRaw(t, sock)
	io.ReadFull(c, make([]byte, serverGreetingLen))
	c.Write(goHandshake(""))
	var h [optReplyHeaderLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint32(h[12:]); got != repErrTLSReqd {
		t.Fatalf("OPT_GO before STARTTLS: reply %#x, want NBD_REP_ERR_TLS_REQD", got)
	}
	// EXPORT_NAME cannot be refused with a reply, so the server hangs up.
	c2 := dialRaw(t, sock)
	io.ReadFull(c2, make([]byte, serverGreetingLen))
	c2.Write(exportNameOpt(""))
	if n, _ := io.Copy(io.Discard, c2); n != 0 {
		t.Fatalf("EXPORT_NAME before STARTTLS got %d bytes of reply", n)
	}
}

// TestTLSVersionFloor checks that STARTTLS refuses TLS 1.2 and negotiates
// 1.3, even when the caller's config allows less.
func TestTLSVersionFloor(t *testing.T) {
	cfg, _ := selfSignedTLS(t)
	cfg.MinVersion = tls.VersionTLS10
	path := makeImage(t, "v.img", 1<<20, 23)
	srv := oneExport(openFileDisk(t, path), false)
	srv.TLSConfig = cfg
	sock := startServer(t, srv)
	for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := dialRaw(t, sock)
		io.ReadFull(c, make([]byte, serverGreetingLen))
		var b []byte
		b = binary.BigEndian.AppendUint32(b, clientFixedNewstyle)
		b = binary.BigEndian.AppendUint64(b, ihaveOpt)
		b = binary.BigEndian.AppendUint32(b, optStartTLS)
		b = binary.BigEndian.AppendUint32(b, 0)
		c.Write(b)
		var h [optReplyHeaderLen]byte
		if _, err := io.ReadFull(c, h[:]); err != nil || binary.BigEndian.Uint32(h[12:]) != repAck {
			t.Fatalf("STARTTLS: %v %x", err, h)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: max})
		err := tc.Handshake()
		if max == tls.VersionTLS12 && err == nil {
			t.Error("TLS 1.2 handshake accepted")
		}
		if max == tls.VersionTLS13 {
			if err != nil {
				t.Fatalf("TLS 1.3 handshake: %v", err)
			}
			if v := tc.ConnectionState().Version; v != tls.VersionTLS13 {
				t.Errorf("negotiated %x", v)
			}
		}
	}
}
