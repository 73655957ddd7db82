package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
)

var record = flag.Bool("record", false, "re-record testdata/clients/*.bin from the real clients")

// recordingConn keeps a copy of everything the client sent.
type recordingConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (c recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

type recordingListener struct {
	net.Listener
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return recordingConn{c, &l.mu, &l.buf}, nil
}

// TestRecordClientStreams refreshes the fuzz seeds: the exact bytes that
// nbdinfo, qemu-img and qemu-io send to this server. Run with -record.
func TestRecordClientStreams(t *testing.T) {
	if !*record {
		t.Skip("run with -record to re-record testdata/clients")
	}
	clients := map[string][]string{
		"nbdinfo.bin":      {"nbdinfo", "--json", "URI"},
		"nbdinfo-list.bin": {"nbdinfo", "--list", "URI"},
		"qemu-img.bin":     {"qemu-img", "convert", "-f", "raw", "-O", "raw", "URI", "OUT"},
		"qemu-io.bin":      {"qemu-io", "-f", "raw", "-c", "write -P 0x5a 4k 8k", "-c", "write -z 64k 4k", "-c", "discard 128k 4k", "-c", "flush", "-c", "read 0 16k", "URI"},
	}
	for name, argv := range clients {
		testutil.RequireTool(t, argv[0])
		path := makeImage(t, "rec.img", 256<<10, 31)
		dir := t.TempDir()
		sock := filepath.Join(dir, "s")
		ul, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l := &recordingListener{Listener: ul}
		srv := oneExport(openFileDisk(t, path), false)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- srv.Serve(ctx, l) }()
		args := append([]string(nil), argv[1:]...)
		for i, a := range args {
			switch a {
			case "URI":
				args[i] = unixURI(sock)
			case "OUT":
				args[i] = filepath.Join(dir, "out")
			}
		}
		run(t, argv[0], args...)
		cancel()
		<-done
		l.mu.Lock()
		if err := os.WriteFile(filepath.Join("testdata", "clients", name), l.buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		l.mu.Unlock()
	}
}

// seedClients adds the recorded real client streams to a fuzzer.
func seedClients(f *testing.F) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "clients", "*.bin"))
	if len(files) == 0 {
		f.Fatal("no recorded client streams in testdata/clients")
	}
	var seeds [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// fuzzServe feeds input to a server connection over net.Pipe, drains its
// output and fails if it does not finish: no panic, no hang.
func fuzzServe(t *testing.T, srv *Server, input []byte) {
	serverSide, clientSide := net.Pipe()
	cn := srv.newConn(serverSide)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.wg.Done()
		cn.serve(context.Background())
	}()
	go io.Copy(io.Discard, clientSide)
	clientSide.SetWriteDeadline(time.Now().Add(5 * time.Second))
	clientSide.Write(input)
	clientSide.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server connection did not finish")
	}
}

func fuzzServer(t testing.TB) *Server {
	path := makeImage(t, "fuzz.img", 256<<10, 32)
	srv := oneExport(openFileDisk(t, path), false)
	srv.Exports["ro"] = Export{Name: "ro", Backend: srv.Exports[""].Backend, ReadOnly: true}
	// A sparse source, so block status meets a real Extenter.
	sparse := filepath.Join(t.TempDir(), "sparse.img")
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(sparse, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(patternBytes(33, 8192), 64<<10)
	f.WriteAt(make([]byte, 4096), 512<<10)
	f.Close()
	src, err := disk.OpenSource(sparse)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	srv.Exports["sparse"] = Export{Name: "sparse", Backend: src}
	srv.HandshakeTimeout = 2 * time.Second
	if err := srv.check(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// FuzzHandshake sends arbitrary bytes from the first client byte on.
func FuzzHandshake(f *testing.F) {
	for _, s := range seedClients(f) {
		f.Add(s)
	}
	f.Add(goHandshake(""))
	f.Add(exportNameOpt("ro"))
	f.Add(structuredHandshake("sparse", "sparse", metaBaseAllocation))
	f.Add(structuredHandshake("", "ro", "base:", "x-a:b"))
	hello := binary.BigEndian.AppendUint32(nil, clientFixedNewstyle)
	f.Add(append(append(append(hello, optBytes(optStructuredRepl, nil)...),
		optBytes(optListMetaContext, metaData("sparse"))...),
		optBytes(optListMetaContext, []byte{0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1})...))
	f.Add(append(append(hello, optBytes(optSetMetaContext, metaData("", metaBaseAllocation))...),
		optBytes(optStructuredRepl, []byte{1})...))
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzServe(t, srv, input)
	})
}

// structuredHandshake returns the bytes a client sends to negotiate
// structured replies, select contexts with queries for export set, and go
// to export use.
func structuredHandshake(set, use string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	b = append(b, optBytes(optStructuredRepl, nil)...)
	b = append(b, optBytes(optSetMetaContext, metaData(set, queries...))...)
	return append(b, optBytes(optGo, goData(use))...)
}

// FuzzStructuredRequests negotiates structured replies and base:allocation
// on a sparse source and then sends arbitrary requests.
func FuzzStructuredRequests(f *testing.F) {
	prefix := structuredHandshake("sparse", "sparse", metaBaseAllocation)
	for _, s := range seedClients(f) {
		// Recorded streams that went through OPT_GO carry requests after
		// its option data; those of qemu-img include block status.
		goOpt := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, ihaveOpt), optGo)
		if i := bytes.LastIndex(s, goOpt); i >= 0 {
			if j := bytes.Index(s[i:], binary.BigEndian.AppendUint32(nil, requestMagic)); j >= 0 {
				f.Add(s[i+j:])
			}
		}
	}
	f.Add(encodeRequest(CmdBlockStatus, 0, 1, 0, 1<<20))
	f.Add(encodeRequest(CmdBlockStatus, cmdFlagReqOne, 2, 60<<10, 8192))
	f.Add(append(encodeRequest(CmdRead, cmdFlagDF, 3, 64<<10, 4096), encodeRequest(CmdBlockStatus, 0, 4, 1<<20-1, 1)...))
	f.Add(encodeRequest(CmdRead, 0, 5, 0, 0))
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzServe(t, srv, append(append([]byte(nil), prefix...), input...))
	})
}

// FuzzRequests negotiates properly and then sends arbitrary requests, so
// the fuzzer spends its time on the transmission phase.
func FuzzRequests(f *testing.F) {
	prefix := goHandshake("")
	for _, s := range seedClients(f) {
		// Recorded streams that used OPT_GO with the default export carry
		// requests right after the same negotiation bytes.
		if i := bytes.Index(s, prefix[4:]); i >= 0 {
			f.Add(s[i+len(prefix)-4:])
		}
	}
	f.Add(encodeRequest(CmdRead, 0, 1, 0, 4096))
	f.Add(append(encodeRequest(CmdWrite, cmdFlagFUA, 2, 512, 4), 1, 2, 3, 4))
	f.Add(encodeRequest(CmdWriteZeroes, cmdFlagNoHole, 3, 0, 1<<20))
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzServe(t, srv, append(append([]byte(nil), prefix...), input...))
	})
}

// FuzzRequestsDirect is FuzzRequests on a server whose memory budget holds
// less than most requests, so that they are served directly (serveDirect):
// streamed READs and WRITEs, replies written before the next request.
func FuzzRequestsDirect(f *testing.F) {
	prefix := goHandshake("")
	f.Add(encodeRequest(CmdRead, 0, 1, 0, 1<<20))
	f.Add(append(encodeRequest(CmdWrite, cmdFlagFUA, 2, 512, 4), 1, 2, 3, 4))
	f.Add(append(encodeRequest(CmdWrite, 0, 2, 0, DirectChunk+4), make([]byte, DirectChunk+4)...))
	f.Add(encodeRequest(CmdWriteZeroes, cmdFlagNoHole, 3, 0, 1<<20))
	f.Add(encodeRequest(CmdRead, 0, 4, 0, 0))
	srv := fuzzServer(f)
	srv.Limits = Limits{Memory: minMemory}
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzServe(t, srv, append(append([]byte(nil), prefix...), input...))
	})
}
