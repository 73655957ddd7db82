package peimports

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// TestReadAgainstObjdump reads hand-built PE32 and PE32+ images and checks
// the module list against what binutils' objdump -p finds in the same file.
func TestReadAgainstObjdump(t *testing.T) {
	objdump := testutil.RequireTool(t, "objdump")
	mods := []string{"ntoskrnl.exe", "HAL.dll", "PCIIDEX.SYS", "WMILIB.SYS"}
	for _, plus := range []bool{false, true} {
		img := testutil.PEWithImports(mods, plus)
		got, err := Read(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("plus=%v: %v", plus, err)
		}
		path := filepath.Join(t.TempDir(), "drv.sys")
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(objdump, "-p", path).CombinedOutput()
		if err != nil {
			t.Fatalf("objdump: %v\n%s", err, out)
		}
		var want []string
		for _, m := range regexp.MustCompile(`DLL Name: (\S+)`).FindAllStringSubmatch(string(out), -1) {
			want = append(want, m[1])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") || len(want) != len(mods) {
			t.Errorf("plus=%v: Read = %v, objdump = %v (built with %v)", plus, got, want, mods)
		}
	}
}

func TestReadMalformed(t *testing.T) {
	good := testutil.PEWithImports([]string{"PCIIDEX.SYS"}, true)
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"empty", func([]byte) []byte { return nil }, ErrNotPE},
		{"no MZ", func(b []byte) []byte { b[0] = 'X'; return b }, ErrNotPE},
		{"no PE", func(b []byte) []byte { b[0x40] = 'X'; return b }, ErrNotPE},
		{"lfanew far", func(b []byte) []byte { b[0x3C], b[0x3F] = 0xFF, 0x7F; return b }, ErrFormat},
		{"truncated", func(b []byte) []byte { return b[:0x210] }, ErrFormat},
		{"name RVA outside", func(b []byte) []byte { b[0x200+12], b[0x200+13] = 0xFF, 0xFF; return b }, ErrFormat},
		{"bad magic", func(b []byte) []byte { b[0x58] = 0x99; return b }, ErrFormat},
	} {
		b := tc.mod(append([]byte(nil), good...))
		_, err := Read(bytes.NewReader(b), int64(len(b)))
		var fe *FormatError
		if !errors.Is(err, tc.want) || !errors.As(err, &fe) {
			t.Errorf("%s: %v, want a FormatError matching %v", tc.name, err, tc.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(testutil.PEWithImports([]string{"PCIIDEX.SYS", "HAL.dll"}, false))
	f.Add(testutil.PEWithImports([]string{"storport.sys"}, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := Read(bytes.NewReader(b), int64(len(b)))
		if err == nil && len(names) > maxImports {
			t.Fatalf("%d names", len(names))
		}
	})
}
