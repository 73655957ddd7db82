package nbd

import (
	"testing"

	"github.com/kvmify/kvmify/disk"
)

// Backends with fewer abilities than fileDisk, to check that only what a
// backend can do is advertised.
type (
	readerOnly  struct{ d *fileDisk }
	writerOnly  struct{ readerOnly }
	writeFlush  struct{ writerOnly }
	notMultiRW  struct{ writeFlush }
	multiFalse  struct{ *fileDisk }
	trimNoFlush struct{ writerOnly }
)

func (r readerOnly) ReadAt(p []byte, off int64) (int, error)  { return r.d.ReadAt(p, off) }
func (r readerOnly) Size() int64                              { return r.d.Size() }
func (w writerOnly) WriteAt(p []byte, off int64) (int, error) { return w.d.WriteAt(p, off) }
func (w writeFlush) Flush() error                             { return w.d.Flush() }
func (t trimNoFlush) Trim(off, n int64) error                 { return t.d.Trim(off, n) }
func (multiFalse) MultiConnSafe() bool                        { return false }

var (
	_ disk.Reader  = readerOnly{}
	_ disk.Writer  = writerOnly{}
	_ disk.Flusher = writeFlush{}
	_ disk.Trimmer = trimNoFlush{}
)

func TestAdvertisedFlags(t *testing.T) {
	path := makeImage(t, "caps.img", 4096, 61)
	fd := openFileDisk(t, path)
	ro := readerOnly{fd}
	base := tflagHasFlags | tflagSendCache
	for _, tc := range []struct {
		name string
		b    disk.Reader
		ro   bool
		want uint16
	}{
		{"reader", ro, false, base | tflagReadOnly | tflagCanMultiConn},
		{"writer", writerOnly{ro}, false, base | tflagSendWriteZeroes},
		{"writer read-only", writerOnly{ro}, true, base | tflagReadOnly | tflagCanMultiConn},
		{"writer+flush", writeFlush{writerOnly{ro}}, false, base | tflagSendWriteZeroes | tflagSendFlush | tflagSendFUA},
		{"writer+trim", trimNoFlush{writerOnly{ro}}, false, base | tflagSendWriteZeroes | tflagSendTrim},
		{"everything", fd, false, base | tflagSendWriteZeroes | tflagSendTrim | tflagSendFlush | tflagSendFUA | tflagCanMultiConn},
		{"everything read-only", fd, true, base | tflagReadOnly | tflagSendFlush | tflagSendFUA | tflagCanMultiConn},
		{"multi-conn says no", multiFalse{fd}, false, base | tflagSendWriteZeroes | tflagSendTrim | tflagSendFlush | tflagSendFUA},
	} {
		got := resolveExport(Export{Backend: tc.b, ReadOnly: tc.ro}).flags
		if got != tc.want {
			t.Errorf("%s: flags %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// TestEmulatedWriteZeroes checks WRITE_ZEROES on a backend without a Zeroer,
// where the server writes zero-filled buffers itself.
func TestEmulatedWriteZeroes(t *testing.T) {
	const size = 3 << 20
	path := makeImage(t, "ez.img", size, 62)
	fd := openFileDisk(t, path)
	sock := startServer(t, oneExport(writeFlush{writerOnly{readerOnly{fd}}}, false))
	cl := dialGo(t, sock, "")
	if errno, _ := cl.do(CmdWriteZeroes, cmdFlagFUA, 4096, 2<<20+5, nil); errno != 0 {
		t.Fatalf("WRITE_ZEROES: errno %d", errno)
	}
	img := patternBytes(62, size)
	_, data := cl.do(CmdRead, 0, 0, size, nil)
	for i := range data {
		want := img[i]
		if i >= 4096 && i < 4096+2<<20+5 {
			want = 0
		}
		if data[i] != want {
			t.Fatalf("byte %#x is %#x, want %#x", i, data[i], want)
		}
	}
}
