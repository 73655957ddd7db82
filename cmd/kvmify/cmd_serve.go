package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kvmify/kvmify/launch"
	"github.com/kvmify/kvmify/nbd"
	"github.com/kvmify/kvmify/pipeline"
)

// defaultNBDPort is the port IANA assigned to NBD, used when --listen names
// only a host.
const defaultNBDPort = "10809"

type serveOptions struct {
	patch       patchFlags
	Unix        string
	Listen      string
	ReadOnly    bool
	TLSCert     string
	TLSKey      string
	TLSRequired bool
	ExportName  string
	limits      nbdLimitFlags
}

func newServeCmd() *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve IMAGE",
		Short: "Serve the patched disk over NBD through a copy-on-write overlay",
		Long: `Serve IMAGE (a raw disk image or a block device, opened read-only) over NBD.
Every write a client makes lands in the overlay, never in IMAGE.
` + overlayHelp + `

--no-patch serves the plain copy-on-write view. An image that truly holds no
Windows is served without a fix.

kvmify listens on a unix socket: --unix PATH, by default
kvmify-<image name>.nbd.sock in $XDG_RUNTIME_DIR, or in the temporary
directory when that is unset. A leftover socket file is replaced only when
nothing listens on it; a busy socket or port is refused before any overlay
is created. --listen ADDR serves TCP instead (port 10809 when ADDR names
none). The exact qemu-system-x86_64, qemu-img and nbdinfo arguments are
printed on stderr; the NBD URI alone is printed on stdout.

--read-only exports the disk read-only. With --no-patch and no overlay file
(neither --overlay, --ephemeral nor an existing default overlay) the source is
then served directly and no overlay is created.

--tls-cert/--tls-key enable NBD STARTTLS (TLS 1.3); --tls-required refuses
clients that do not upgrade.

` + nbdLimitsHelp + `

kvmify serves until interrupted (Ctrl-C or SIGTERM); it then answers the
requests in flight, flushes the overlay, rewrites --report and exits 0.

Exit status: 0 success (stopped by a signal once serving), 1 failure or
refusal, 2 usage error, 130/143 when SIGINT/SIGTERM interrupts it before it
serves.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), opts, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	opts.patch.register(cmd.Flags())
	opts.limits.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&opts.Unix, "unix", "", "unix socket path (default kvmify-<image name>.nbd.sock in $XDG_RUNTIME_DIR or the temp dir)")
	f.StringVar(&opts.Listen, "listen", "", "serve TCP on this address, e.g. 127.0.0.1 or [::]:10809 (default port 10809)")
	f.BoolVar(&opts.ReadOnly, "read-only", false, "export the disk read-only")
	f.StringVar(&opts.TLSCert, "tls-cert", "", "PEM certificate for NBD STARTTLS")
	f.StringVar(&opts.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	f.BoolVar(&opts.TLSRequired, "tls-required", false, "refuse clients that do not use TLS")
	f.StringVar(&opts.ExportName, "export-name", "", "NBD export name (default: the default export, \"\")")
	return cmd
}

func (o *serveOptions) check() error {
	if err := o.limits.check(); err != nil {
		return err
	}
	if o.Unix != "" && o.Listen != "" {
		return usagef("--unix and --listen exclude each other")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if o.TLSRequired && o.TLSCert == "" {
		return usagef("--tls-required needs --tls-cert and --tls-key")
	}
	if len(o.ExportName) > 4096 {
		return usagef("--export-name is longer than 4096 bytes")
	}
	return nil
}

func runServe(ctx context.Context, opts serveOptions, args []string, stdout, stderr io.Writer) error {
	image := args[0]
	if err := opts.check(); err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	}

	// The listener is opened first: a busy socket or port is refused
	// before any overlay is created.
	l, uri, err := serveListener(image, opts)
	if err != nil {
		return err
	}
	req := opts.patch.request(image, stderr)
	req.SourceDirect = opts.ReadOnly
	sess, err := pipeline.Open(ctx, req)
	if err != nil {
		l.Close()
		return err
	}
	backend, what := sess.Disk(), sess.Describe()
	srv := &nbd.Server{
		Exports: map[string]nbd.Export{opts.ExportName: {
			Name: opts.ExportName, Description: "kvmify " + image, Backend: backend, ReadOnly: opts.ReadOnly}},
		TLSConfig:   tlsConfig,
		TLSRequired: opts.TLSRequired,
		Limits:      opts.limits.limits(),
	}
	line, _, _, err := qemuLine(backend, sess.Record, opts.patch.Patch, launch.Options{ReadOnly: opts.ReadOnly},
		nbdDisk(l, opts.ExportName, tlsConfig != nil), sess.OverlayPath, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kvmify: note: no QEMU line (%v)\n", err)
	}
	printServeHelp(stderr, image, what, uri, line, tlsConfig != nil)
	fmt.Fprintln(stdout, uri.String())

	err = srv.Serve(ctx, l)
	if errors.Is(err, nbd.ErrServerClosed) {
		err = nil
	}
	// Serve has answered every request in flight, so closing flushes
	// everything a client was told is written.
	if cerr := sess.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		fmt.Fprintf(stderr, "kvmify: stopped serving %s\n", image)
	}
	return err
}

// defaultSocketPath keeps the socket out of the current directory, whose
// path may exceed the 108-byte limit of unix socket addresses.
func defaultSocketPath(image string) string {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kvmify-"+filepath.Base(image)+".nbd.sock")
}

// listenAddress adds the NBD port to an address that names only a host.
func listenAddress(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), defaultNBDPort)
}

// serveListener opens the socket and returns the NBD URI clients use.
func serveListener(image string, opts serveOptions) (net.Listener, *url.URL, error) {
	scheme := "nbd"
	if opts.TLSRequired {
		scheme = "nbds"
	}
	path := "/" + opts.ExportName
	if opts.Listen != "" {
		l, err := net.Listen("tcp", listenAddress(opts.Listen))
		if err != nil {
			return nil, nil, err
		}
		return l, &url.URL{Scheme: scheme, Host: l.Addr().String(), Path: path}, nil
	}
	sock := opts.Unix
	if sock == "" {
		sock = defaultSocketPath(image)
	}
	if err := removeStaleSocket(sock); err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, nil, err
	}
	return l, &url.URL{Scheme: scheme + "+unix", Path: path, RawQuery: "socket=" + socketEscaper.Replace(sock)}, nil
}

// socketEscaper escapes only what would end or break the socket query
// parameter, so the printed URI shows the path as typed.
var socketEscaper = strings.NewReplacer("%", "%25", "&", "%26", "#", "%23", "+", "%2B", " ", "%20", ",", "%2C")

// removeStaleSocket deletes a socket file left by a killed server, and
// refuses to touch a live socket or anything that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another server is listening on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether it is in use: %w", path, err)
	}
	return os.Remove(path)
}

// tlsCertDirHint stands for the client's x509 directory in printed lines:
// kvmify holds the server's certificate, not the client's.
const tlsCertDirHint = "CLIENT_CERT_DIR"

// printServeHelp says what is served where, and the QEMU line that boots it
// (the one 'kvmify boot --dry-run' prints with the same flags).
func printServeHelp(w io.Writer, image, what string, uri *url.URL, qemu string, tls bool) {
	fmt.Fprintf(w, "kvmify: serving %s through %s at %s\n", image, what, uri)
	if qemu != "" {
		fmt.Fprintf(w, "  %s\n", qemu)
	}
	if tls {
		fmt.Fprintf(w, "  (TLS: %s is the directory of the client's ca-cert.pem; libnbd clients add tls-certificates=DIR to the URI)\n", tlsCertDirHint)
	}
	fmt.Fprintf(w, "  %s\n", launch.ShellQuote([]string{"qemu-img", "info", uri.String()}))
	fmt.Fprintf(w, "  %s\n", launch.ShellQuote([]string{"nbdinfo", uri.String()}))
	fmt.Fprintf(w, "kvmify: press Ctrl-C to stop; the overlay is flushed on exit\n")
}

// nbdDisk says where QEMU finds the disk a listener serves.
func nbdDisk(l net.Listener, export string, tls bool) launch.Disk {
	d := launch.Disk{Export: export}
	if tls {
		d.TLSDir = tlsCertDirHint
	}
	switch a := l.Addr().(type) {
	case *net.UnixAddr:
		d.Socket = a.Name
	default:
		d.Host, d.Port, _ = net.SplitHostPort(a.String())
	}
	return d
}
