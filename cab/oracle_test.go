package cab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// openFile opens a cabinet file for a test.
func openFile(t testing.TB, path string) *Cabinet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(f, fi.Size())
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	return c
}

// memberSHA256 decodes one member and returns its sha256 and length.
func memberSHA256(c *Cabinet, name string) (string, int64, error) {
	h := sha256.New()
	var n int64
	err := c.Extract([]string{name}, func(_ *File, r io.Reader) error {
		var err error
		n, err = io.Copy(h, r)
		return err
	})
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// cabextractSHA256 has cabextract write one member to stdout and returns
// its sha256, or ok=false when cabextract reports a failure.
func cabextractSHA256(t testing.TB, path, name string) (sum string, ok bool) {
	t.Helper()
	bin := testutil.RequireTool(t, "cabextract")
	cmd := exec.Command(bin, "-q", "-p", "-F", name, path)
	h := sha256.New()
	cmd.Stdout = h
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil || strings.Contains(stderr.String(), name+":") {
		return "", false
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// compareWithCabextract decodes every member of a cabinet and holds each
// result to cabextract's: where cabextract succeeds we produce the same
// bytes (Quantum aside, which we refuse with ErrUnsupported); where it
// fails we fail with an error. It returns the members we decoded.
func compareWithCabextract(t *testing.T, path string) (decoded int) {
	t.Helper()
	c := openFile(t, path)
	for _, f := range c.Files {
		got, n, err := memberSHA256(c, f.Name)
		want, ok := cabextractSHA256(t, path, f.Name)
		switch {
		case err == nil && ok:
			if got != want {
				t.Errorf("%s: %s: sha256 %s, cabextract %s", filepath.Base(path), f.Name, got, want)
			}
			if n != int64(f.Size) {
				t.Errorf("%s: %s: %d bytes, entry says %d", filepath.Base(path), f.Name, n, f.Size)
			}
			decoded++
		case err == nil && !ok:
			t.Errorf("%s: %s: we decoded %d bytes where cabextract fails", filepath.Base(path), f.Name, n)
		case err != nil && ok:
			fo, _ := f.folder(len(c.Folders))
			if errors.Is(err, ErrUnsupported) && c.Folders[fo].Compression.Method() == CompressQuantum {
				t.Logf("%s: %s: %v (Quantum refused, as designed)", filepath.Base(path), f.Name, err)
				continue
			}
			t.Errorf("%s: %s: %v, where cabextract decodes it", filepath.Base(path), f.Name, err)
		default:
			t.Logf("%s: %s: both fail; ours: %v", filepath.Base(path), f.Name, err)
		}
	}
	return decoded
}

func TestCorpusStored(t *testing.T) {
	p := testutil.CorpusFile(t, "cab/simple.cab")
	if n := compareWithCabextract(t, p); n != 2 {
		t.Errorf("decoded %d members of simple.cab, want 2", n)
	}
	c := openFile(t, p)
	if f, ok := c.Lookup("WELCOME.C"); !ok || f.Name != "welcome.c" || f.Size != 74 {
		t.Errorf("Lookup(WELCOME.C) = %+v, %v", f, ok)
	}
	if c.Folders[0].Compression.Method() != CompressNone {
		t.Errorf("simple.cab folder is %v, want stored", c.Folders[0].Compression)
	}
}

func TestCorpusMixed(t *testing.T) {
	p := testutil.CorpusFile(t, "cab/mixed.cab")
	c := openFile(t, p)
	var methods []string
	for _, f := range c.Folders {
		methods = append(methods, f.Compression.String())
	}
	if got := strings.Join(methods, " "); got != "MSZIP LZX:18 Quantum:18" {
		t.Errorf("folders %q", got)
	}
	compareWithCabextract(t, p)
	if _, _, err := memberSHA256(c, "qtm.txt"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Quantum member: %v, want ErrUnsupported", err)
	}
}

func TestCorpusSplit(t *testing.T) {
	p := testutil.CorpusFile(t, "cab/split-1.cab")
	c := openFile(t, p)
	if c.Header.NextCabinet == "" {
		t.Fatalf("split-1.cab names no next cabinet: %+v", c.Header)
	}
	compareWithCabextract(t, p)
	_, _, err := memberSHA256(c, "medium1.bin")
	if !errors.Is(err, ErrSplit) || !strings.Contains(err.Error(), c.Header.NextCabinet) {
		t.Errorf("medium1.bin: %v, want ErrSplit naming %s", err, c.Header.NextCabinet)
	}
}

func TestCorpusMalformed(t *testing.T) {
	for _, name := range []string{
		"cve-2015-4470-mszip-over-read.cab",
		"cve-2015-4471-lzx-under-read.cab",
		"lzx-main-tree-no-lengths.cab",
		"lzx-premature-matches.cab",
	} {
		t.Run(name, func(t *testing.T) {
			p := testutil.CorpusFile(t, "cab/"+name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Open(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				var fe *FormatError
				if !errors.As(err, &fe) {
					t.Errorf("Open: %v is no FormatError", err)
				}
				t.Logf("Open: %v", err)
				return
			}
			for _, f := range c.Files {
				_, _, err := memberSHA256(c, f.Name)
				var fe *FormatError
				if err == nil || !errors.As(err, &fe) {
					t.Errorf("%s: %v, want a FormatError", f.Name, err)
				}
				t.Logf("%s: %v", f.Name, err)
			}
			compareWithCabextract(t, p)
		})
	}
}

// gcabMake builds a cabinet with gcab from files written into a temp dir.
func gcabMake(t testing.TB, files map[string][]byte, zip bool) string {
	t.Helper()
	bin := testutil.RequireTool(t, "gcab")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", "-n"}
	if zip {
		args = append(args, "-z")
	}
	out := filepath.Join(dir, "test.cab")
	args = append(args, out)
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcab %v: %v\n%s", args, err, b)
	}
	return out
}

// testFiles makes random and compressible files of sizes around the 32 KiB
// block boundary and spanning many blocks.
func testFiles(seed uint64) map[string][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	files := map[string][]byte{}
	sizes := []int{0, 1, 100, 32767, 32768, 32769, 65536 + 7, 300000, 1 << 20}
	for i, n := range sizes {
		rnd := make([]byte, n)
		for j := range rnd {
			rnd[j] = byte(rng.Uint32())
		}
		files[nameOf("rand", i)] = rnd
		text := make([]byte, n)
		words := []string{"atapi", "intelide", "pciide", "pciidex", "driver", "cab", "\r\n", " "}
		for j := 0; j < n; {
			j += copy(text[j:], words[rng.IntN(len(words))])
		}
		files[nameOf("text", i)] = text
	}
	return files
}

func nameOf(kind string, i int) string { return kind + string(rune('a'+i)) + ".bin" }

func TestGcabRoundTrip(t *testing.T) {
	for _, zip := range []bool{false, true} {
		files := testFiles(7)
		p := gcabMake(t, files, zip)
		c := openFile(t, p)
		want := "stored"
		if zip {
			want = "MSZIP"
		}
		if got := c.Folders[0].Compression.String(); got != want {
			t.Errorf("gcab folder %s, want %s", got, want)
		}
		if n := compareWithCabextract(t, p); n != len(files) {
			t.Errorf("decoded %d of %d members", n, len(files))
		}
		// One pass over everything, in the order the cabinet stores it.
		var names []string
		for name := range files {
			names = append(names, strings.ToUpper(name))
		}
		got := 0
		err := c.Extract(names, func(f *File, r io.Reader) error {
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			if !bytes.Equal(b, files[f.Name]) {
				t.Errorf("%s: content differs from the file gcab was given", f.Name)
			}
			got++
			return nil
		})
		if err != nil || got != len(files) {
			t.Errorf("Extract all: %d members, %v", got, err)
		}
	}
}

func TestExtractErrors(t *testing.T) {
	files := testFiles(3)
	p := gcabMake(t, files, true)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Extract([]string{"nope.sys"}, nil); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.sys") {
		t.Errorf("missing member: %v", err)
	}
	if _, err := c.ReadFile("randi.bin", 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile over limit: %v", err)
	}
	// A flipped byte in a block's data fails its checksum, with the offset.
	f := &c.Folders[0]
	bad := bytes.Clone(b)
	bad[f.DataOffset+cfdataSize+100] ^= 0x40
	c2, err := Open(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for name := range files {
		all = append(all, name)
	}
	extractAll := func(c *Cabinet) (same bool, err error) {
		same = true
		err = c.Extract(all, func(f *File, r io.Reader) error {
			b, err := io.ReadAll(r)
			same = same && bytes.Equal(b, files[f.Name])
			return err
		})
		return same, err
	}
	_, err = extractAll(c2)
	var fe *FormatError
	if !errors.Is(err, ErrChecksum) || !errors.As(err, &fe) || fe.Offset != f.DataOffset {
		t.Errorf("corrupt block: %v, want ErrChecksum at 0x%x", err, f.DataOffset)
	}
	// With the checksum cleared the corruption reaches the inflater, which
	// must fail or produce bytes other than the original, never panic.
	copy(bad[f.DataOffset:], []byte{0, 0, 0, 0})
	c3, _ := Open(bytes.NewReader(bad), int64(len(bad)))
	if same, err := extractAll(c3); err == nil && same {
		t.Errorf("corrupt MSZIP block decoded to the original")
	} else {
		t.Logf("corrupt block without checksum: %v", err)
	}
	// Truncation is named with an offset.
	c4, err := Open(bytes.NewReader(b[:len(b)-10]), int64(len(b)-10))
	if err == nil {
		for _, m := range c4.Files {
			if _, _, err := memberSHA256(c4, m.Name); err != nil && !errors.As(err, &fe) {
				t.Errorf("truncated: %v is no FormatError", err)
			}
		}
	}
}

// TestManyMembers reads a cabinet whose CFFILE table (1000 entries, long
// names long) spans several table chunks, extracting every member in one
// pass and holding each to what cabextract writes.
func TestManyMembers(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	files := map[string][]byte{}
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("member-%04d%s.sys", i, strings.Repeat("x", rng.IntN(150)))
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.IntN(4)) + 'a'
		}
		files[name] = b
	}
	p := gcabMake(t, files, true)
	c := openFile(t, p)
	if len(c.Files) != len(files) {
		t.Fatalf("%d members, want %d", len(c.Files), len(files))
	}
	if last := c.Files[len(c.Files)-1].EntryAt; last < tableChunk {
		t.Fatalf("CFFILE table ends at 0x%x, inside the first chunk", last)
	}
	out := t.TempDir()
	bin := testutil.RequireTool(t, "cabextract")
	if b, err := exec.Command(bin, "-q", "-d", out, p).CombinedOutput(); err != nil {
		t.Fatalf("cabextract: %v\n%s", err, b)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	got := 0
	err := c.Extract(names, func(f *File, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		want, err := os.ReadFile(filepath.Join(out, f.Name))
		if err != nil {
			return err
		}
		if !bytes.Equal(b, want) || !bytes.Equal(b, files[f.Name]) {
			t.Errorf("%s differs from cabextract's or the original", f.Name)
		}
		got++
		return nil
	})
	if err != nil || got != len(files) {
		t.Errorf("Extract: %d of %d members, %v", got, len(files), err)
	}
}
