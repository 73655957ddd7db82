package cab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestCorpusLZX21 decodes the 14 MiB member of large-files-cab.cab, an
// LZX:21 folder like XP's driver.cab, and holds it to cabextract's bytes.
func TestCorpusLZX21(t *testing.T) {
	p := testutil.CorpusFile(t, "cab/large-files-cab.cab")
	c := openFile(t, p)
	if got := c.Folders[0].Compression.String(); got != "LZX:21" {
		t.Fatalf("folder is %s, want LZX:21", got)
	}
	if n := compareWithCabextract(t, p); n != 1 {
		t.Fatalf("decoded %d members, want 1", n)
	}
}

// TestCorpusNestedLargeMembers reads the cabinet inside large-files-cab.cab:
// three 2 GiB members in MSZIP, LZX:15 and LZX:21 folders. Their first
// 24 MiB (hundreds of frames, past the 2 MiB window several times) are held
// to cabextract's; the whole members would take minutes.
func TestCorpusNestedLargeMembers(t *testing.T) {
	p := testutil.CorpusFile(t, "cab/large-files-cab.cab")
	bin := testutil.RequireTool(t, "cabextract")
	outer := openFile(t, p)
	inner, err := outer.ReadFile("large-files.cab", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	innerPath := filepath.Join(t.TempDir(), "large-files.cab")
	if err := os.WriteFile(innerPath, inner, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open(bytes.NewReader(inner), int64(len(inner)))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = 24 << 20
	for _, f := range c.Files {
		h := sha256.New()
		err := c.Extract([]string{f.Name}, func(_ *File, r io.Reader) error {
			_, err := io.CopyN(h, r, prefix)
			return err
		})
		if err != nil {
			t.Errorf("%s: %v", f.Name, err)
			continue
		}
		got := hex.EncodeToString(h.Sum(nil))
		cmd := exec.Command("sh", "-c", `"$0" -q -p -F "$1" "$2" | head -c "$3" | sha256sum`, bin, f.Name, innerPath, "25165824")
		out, err := cmd.Output()
		if err != nil || len(out) < 64 {
			t.Fatalf("cabextract %s: %v", f.Name, err)
		}
		if want := string(out[:64]); got != want {
			fo, _ := f.folder(len(c.Folders))
			t.Errorf("%s (%v): first %d bytes sha256 %s, cabextract %s", f.Name, c.Folders[fo].Compression, prefix, got, want)
		}
	}
}

// e8Encode is the encoder's side of the E8 translation, written from the
// format description: a CALL's relative operand becomes absolute.
func e8Encode(frame []byte, base, size int32) {
	for i := 0; i < len(frame)-lzxE8Tail; {
		if frame[i] != 0xE8 {
			i++
			continue
		}
		cur := base + int32(i)
		rel := int32(le32(frame[i+1:]))
		if rel >= -cur && rel < size {
			abs := rel + cur
			if rel >= size-cur {
				abs = rel - size
			}
			frame[i+1], frame[i+2], frame[i+3], frame[i+4] = byte(abs), byte(abs>>8), byte(abs>>16), byte(abs>>24)
		}
		i += 5
	}
}

// TestE8RoundTrip checks translateE8 undoes the encoder's translation for
// operands inside, at the edges of and outside the translated range; the
// corpus cabinets carry no translated code to test it on.
func TestE8RoundTrip(t *testing.T) {
	const size = 12 << 20
	for _, base := range []int32{0, 32768, 5 << 20} {
		frame := make([]byte, 4096)
		ops := []int32{0, 1, -1, -base, -base - 1, size - 1, size, size - base - 1, size - base, 1 << 30, -1 << 30}
		for i := range frame {
			frame[i] = byte(i * 7)
		}
		for k, op := range ops {
			at := 16 + k*9
			frame[at] = 0xE8
			frame[at+1], frame[at+2], frame[at+3], frame[at+4] = byte(op), byte(op>>8), byte(op>>16), byte(op>>24)
		}
		frame[len(frame)-8] = 0xE8 // in the untranslated tail
		want := bytes.Clone(frame)
		e8Encode(frame, base, size)
		l := &lzx{e8Size: size, total: int64(base)}
		l.translateE8(frame)
		if !bytes.Equal(frame, want) {
			t.Errorf("base %d: E8 translation does not round-trip", base)
		}
	}
}
