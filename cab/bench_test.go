package cab

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
)

// BenchmarkLZXVsCabextract decodes large-files-cab.cab's LZX:21 member
// with cab and with cabextract in the same run, alternating, and reports
// both rates and their ratio (cab's throughput over cabextract's: above 1
// means faster). cabextract's figure includes its process start, which is
// small next to 14 MiB.
func BenchmarkLZXVsCabextract(b *testing.B) {
	p := testutil.CorpusFile(b, "cab/large-files-cab.cab")
	bin := testutil.RequireTool(b, "cabextract")
	raw, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	c, err := Open(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		b.Fatal(err)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	size := int64(c.Files[0].Size)
	b.SetBytes(size)
	b.ReportAllocs()
	var ours, theirs time.Duration
	for b.Loop() {
		t0 := time.Now()
		err := c.Extract([]string{c.Files[0].Name}, func(_ *File, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cmd := exec.Command(bin, "-q", "-p", p)
		cmd.Stdout = devNull
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		theirs += time.Since(t1)
	}
	mb := float64(size) * float64(b.N) / (1 << 20)
	b.ReportMetric(mb/ours.Seconds(), "cab-MiB/s")
	b.ReportMetric(mb/theirs.Seconds(), "cabextract-MiB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
}

// BenchmarkLZXText does the same for the first 64 MiB of the LZX:21 text
// member of the cabinet nested in large-files-cab.cab: Huffman-coded
// matches rather than the mostly stored blocks of the outer member.
func BenchmarkLZXText(b *testing.B) {
	p := testutil.CorpusFile(b, "cab/large-files-cab.cab")
	bin := testutil.RequireTool(b, "cabextract")
	outer := openFile(b, p)
	inner, err := outer.ReadFile("large-files.cab", 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	innerPath := b.TempDir() + "/large-files.cab"
	if err := os.WriteFile(innerPath, inner, 0o644); err != nil {
		b.Fatal(err)
	}
	c, err := Open(bytes.NewReader(inner), int64(len(inner)))
	if err != nil {
		b.Fatal(err)
	}
	const n = 64 << 20
	b.SetBytes(n)
	var ours, theirs time.Duration
	for b.Loop() {
		t0 := time.Now()
		err := c.Extract([]string{"lzx21-2gb.txt"}, func(_ *File, r io.Reader) error {
			_, err := io.CopyN(io.Discard, r, n)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cmd := exec.Command("sh", "-c", `"$0" -q -p -F lzx21-2gb.txt "$1" | head -c 67108864 >/dev/null`, bin, innerPath)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		theirs += time.Since(t1)
	}
	mb := float64(n) * float64(b.N) / (1 << 20)
	b.ReportMetric(mb/ours.Seconds(), "cab-MiB/s")
	b.ReportMetric(mb/theirs.Seconds(), "cabextract-MiB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "ratio")
}
