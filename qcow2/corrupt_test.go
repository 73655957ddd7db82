package qcow2

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestCorruptCluster breaks the deflate stream of one compressed cluster
// (an invalid block type): every read touching it fails with a located
// ErrCorrupt, again on each retry (a failure is never cached), while 4 KiB
// reads of the next cluster, decoded once and then served from the cache,
// give qemu-img's bytes.
func TestCorruptCluster(t *testing.T) {
	// Text compresses: qemu-img stores random clusters uncompressed.
	dir := t.TempDir()
	raw := filepath.Join(dir, "text.raw")
	r := rand.New(rand.NewPCG(5, 6))
	bin := make([]byte, 3<<20)
	for i := range bin {
		bin[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(raw, []byte(base64.StdEncoding.EncodeToString(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.qcow2")
	testutil.QemuImg(t, "convert", "-c", "-O", "qcow2", raw, p)
	want := testutil.OracleRaw(t, p)
	img, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var c int64 = -1
	var host int64
	for i := int64(0); i < img.Size()/img.cs-1; i++ {
		e, err := img.l2Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := img.l2Entry(i + 1)
		if e&l2Compressed != 0 && n&l2Compressed != 0 {
			c, host = i, int64(e&(1<<(62-(img.h.ClusterBits-8))-1))
			break
		}
	}
	img.Close()
	if c < 0 {
		t.Fatal("no two adjacent compressed clusters")
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, host)
	f.Close()
	sum := testutil.FileSHA256(t, p)
	img, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	buf := make([]byte, 4096)
	for try := range 3 {
		_, err := img.ReadAt(buf, c*img.cs+int64(try)*4096)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("read %d of the corrupt cluster: %v, want a located ErrCorrupt", try, err)
		}
	}
	next := (c + 1) * img.cs
	for off := next; off < next+img.cs; off += 4096 {
		if _, err := img.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+4096]) {
			t.Fatalf("4 KiB read at %d of the next cluster: %v or other bytes", off, err)
		}
	}
	if testutil.FileSHA256(t, p) != sum {
		t.Error("the image changed")
	}
}
