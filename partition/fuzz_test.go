package partition

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary disks to Read; it must return a table or an
// error, never panic or loop.
func FuzzRead(f *testing.F) {
	dir := f.TempDir()
	for i, script := range []string{
		"label: dos\nsize=1M, type=7\ntype=5\nsize=512K, type=7\nsize=512K, type=7\n",
		"label: gpt\nsize=1M, name=\"a\"\n",
	} {
		p := filepath.Join(dir, "d"+string(rune('0'+i)))
		if err := os.Truncate(mustCreateF(f, p), 4<<20); err != nil {
			f.Fatal(err)
		}
		cmd := exec.Command("sfdisk", "-q", p)
		cmd.Stdin = strings.NewReader(script)
		if cmd.Run() == nil {
			b, _ := os.ReadFile(p)
			// Keep the seed small: the tables live in the first and last 64 KiB.
			f.Add(append(append([]byte{}, b[:64<<10]...), b[len(b)-(64<<10):]...))
		}
	}
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Read(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			for _, p := range tab.Partitions {
				if p.Start < 0 || p.Size < 0 || p.Start+p.Size > int64(len(b)) {
					t.Fatalf("partition outside the disk: %+v", p)
				}
			}
		}
	})
}

func mustCreateF(f *testing.F, path string) string {
	fh, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	fh.Close()
	return path
}
