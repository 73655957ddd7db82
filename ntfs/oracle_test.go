package ntfs

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// ntfslsLine matches `ntfsls -a -s -l -i` output: inode, size, date, name.
var ntfslsLine = regexp.MustCompile(`^\s*(\d+)\s+(-?\d+)\s+\S+\s+\d+\s+\S+\s+\d+ (.*)$`)

type lsEntry struct {
	record uint64
	size   int64
	name   string
}

func ntfsls(t *testing.T, part, dir string) []lsEntry {
	t.Helper()
	out, err := exec.Command("ntfsls", "-a", "-s", "-l", "-i", "-p", dir, part).Output()
	if err != nil {
		t.Fatalf("ntfsls -p %s: %v", dir, err)
	}
	var ents []lsEntry
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		m := ntfslsLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unparsable ntfsls line %q", line)
		}
		if m[3] == "." || m[3] == ".." {
			continue
		}
		rec, _ := strconv.ParseUint(m[1], 10, 64)
		size, _ := strconv.ParseInt(m[2], 10, 64)
		ents = append(ents, lsEntry{rec, size, m[3]})
	}
	return ents
}

func ntfscat(t *testing.T, part, path, stream string) []byte {
	t.Helper()
	args := []string{part, path}
	if stream != "" {
		args = []string{"-a", "0x80", "-n", stream, part, path}
	}
	out, err := exec.Command("ntfscat", args...).Output()
	if err != nil {
		t.Fatalf("ntfscat %s %s: %v", path, stream, err)
	}
	return out
}

// TestOracle walks every directory of every image and checks that the
// listing matches ntfsls (names, record numbers, sizes) and that every
// file's default and named streams read exactly as ntfscat reads them.
func TestOracle(t *testing.T) {
	for _, img := range allImages {
		t.Run(img.name, func(t *testing.T) {
			o := openImage(t, img)
			files := 0
			var walk func(dir string, f *File)
			walk = func(dir string, f *File) {
				ents, err := o.vol.ReadDir(f)
				if err != nil {
					t.Fatalf("ReadDir %s: %v", dir, err)
				}
				var ours []lsEntry
				for _, e := range ents {
					if e.Record == RecordRoot && e.Name == "." {
						continue
					}
					child, err := o.vol.OpenRecord(e.Record)
					if err != nil {
						t.Fatalf("%s/%s: %v", dir, e.Name, err)
					}
					size := int64(0)
					if !child.IsDirectory() && child.HasData() {
						s, err := child.Stream("")
						if err != nil {
							t.Fatalf("%s/%s: %v", dir, e.Name, err)
						}
						size = s.Size()
					}
					ours = append(ours, lsEntry{e.Record, size, e.Name})
					p := dir + "/" + e.Name
					if child.IsDirectory() {
						if e.Record != RecordRoot {
							walk(p, child)
						}
						continue
					}
					if !child.HasData() || strings.HasPrefix(e.Name, "$") && dir == "" {
						continue // metadata files: $BadClus:$Bad is volume-sized
					}
					checkFile(t, o, p, child)
					files++
				}
				want := ntfsls(t, o.partFile, dirOrRoot(dir))
				sortLS(ours)
				sortLS(want)
				if !equalLS(ours, want) {
					t.Errorf("listing of %q differs from ntfsls:\nours:    %v\nntfsls:  %v", dirOrRoot(dir), ours, want)
				}
			}
			root, err := o.vol.OpenRecord(RecordRoot)
			if err != nil {
				t.Fatal(err)
			}
			walk("", root)
			if files < 10 {
				t.Errorf("only %d files checked", files)
			}
		})
	}
}

func dirOrRoot(d string) string {
	if d == "" {
		return "/"
	}
	return d
}

// checkFile compares every $DATA stream of a file, looked up by path, with
// ntfscat.
func checkFile(t *testing.T, o *openedImage, path string, f *File) {
	t.Helper()
	streams := append([]string{""}, f.StreamNames()...)
	for _, name := range streams {
		p := path
		if name != "" {
			p += ":" + name
		}
		s, err := o.vol.OpenStream(p)
		if err != nil {
			t.Errorf("OpenStream %s: %v", p, err)
			continue
		}
		got := make([]byte, s.Size())
		if _, err := s.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("read %s: %v", p, err)
			continue
		}
		want := ntfscat(t, o.partFile, path, name)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes differ from ntfscat's %d (first difference at %d)", p, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func sortLS(e []lsEntry) {
	sort.Slice(e, func(i, j int) bool { return e[i].name < e[j].name })
}

func equalLS(a, b []lsEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
