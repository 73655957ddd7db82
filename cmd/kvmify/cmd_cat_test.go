package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"
)

// testCatMatchesNtfscat reads files (case-insensitive paths with either
// separator, named streams, non-ASCII names) through runCat and compares
// them with ntfscat on the same partition.
func testCatMatchesNtfscat(t *testing.T, dir string) {
	for _, img := range cliImages {
		image := filepath.Join(dir, img.name)
		part := partitionCopy(t, image, img.start, img.size)
		for _, c := range []struct{ ours, oracle, stream string }{
			{`WINDOWS\system32\CONFIG\software`, "/Windows/System32/config/SOFTWARE", ""},
			{"/hello.txt", "/hello.txt", ""},
			{"empty", "/empty", ""},
			{"ünïcødé – ファイル.txt", "/Ünïcødé – ファイル.txt", ""},
			{"a/b/c/d/e/f/g/h/i/j/k/l/deep.txt", "/a/b/c/d/e/f/g/h/i/j/k/l/deep.txt", ""},
			{"streams.txt:ads1", "/streams.txt", "ads1"},
			{"many/file-with-a-longish-name-250.txt", "/many/file-with-a-longish-name-250.txt", ""},
		} {
			var got bytes.Buffer
			if err := runCat(t.Context(), catOptions{partition: img.partNum}, []string{image, c.ours}, &got); err != nil {
				t.Fatalf("cat %s %s: %v", img.name, c.ours, err)
			}
			args := []string{part, c.oracle}
			if c.stream != "" {
				args = []string{"-a", "0x80", "-n", c.stream, part, c.oracle}
			}
			want, err := exec.Command("ntfscat", args...).Output()
			if err != nil {
				t.Fatalf("ntfscat %v: %v", args, err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("cat %s %s: %d bytes, ntfscat gives %d", img.name, c.ours, got.Len(), len(want))
			}
		}
	}
}
