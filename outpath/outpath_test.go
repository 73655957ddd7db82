package outpath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRefusesInputsByIdentity(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	write(t, src, "source")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(src, hard); err != nil {
		t.Fatal(err)
	}
	var g Guard
	if err := g.AddInput(src, "the source image"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{src, link, hard, filepath.Join(dir, ".", "disk.img")} {
		for _, force := range []bool{false, true} {
			err := g.Check(p, "the report", force)
			if !errors.Is(err, ErrIsInput) || !strings.Contains(err.Error(), "the source image") {
				t.Errorf("Check(%s, force=%v) = %v, want the input refusal", p, force, err)
			}
		}
	}
}

func TestCheckExistingAndMissing(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.json")
	write(t, old, "x")
	var g Guard
	if err := g.Check(old, "the report", false); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing file: %v", err)
	}
	if err := g.Check(old, "the report", true); err != nil {
		t.Errorf("existing file with force: %v", err)
	}
	if err := g.Check(filepath.Join(dir, "new.json"), "the report", false); err != nil {
		t.Errorf("new file: %v", err)
	}
	if err := g.Check(filepath.Join(dir, "nodir", "new.json"), "the report", true); err == nil {
		t.Error("missing directory accepted")
	}
	if err := g.Check(dir, "the report", true); err == nil {
		t.Error("directory accepted")
	}
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)
	if err := g.Check(dangling, "the report", false); err == nil {
		t.Error("dangling symlink accepted without force")
	}
}

func TestWriteFileIsAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	if err := WriteFile(p, []byte("one"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second write without replace: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if err := WriteFile(p, []byte("three"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Fatalf("content %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left files behind: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "no", "x"), []byte("x"), 0o600, false); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
