package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/fstype"
	"github.com/kvmify/kvmify/partition"
	"github.com/kvmify/kvmify/windows"
)

func TestDefaultOverlayPathIdentity(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, []byte("x"), 0o644)
	link := filepath.Join(t.TempDir(), "alias.img")
	os.Symlink(img, link)
	p1, err := DefaultOverlayPath(img)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p1, filepath.Join(os.Getenv("XDG_STATE_HOME"), "kvmify", "overlays")+"/disk.img-") {
		t.Errorf("overlay path %s", p1)
	}
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	p2, _ := DefaultOverlayPath("disk.img")
	p3, _ := DefaultOverlayPath(link)
	if p1 != p2 || p1 != p3 {
		t.Errorf("same file, different overlays: %s %s %s", p1, p2, p3)
	}
	// Another file at the same path (new inode) is another image.
	os.Remove(img)
	os.WriteFile(img, []byte("y"), 0o644)
	other := filepath.Join(dir, "keep")
	os.WriteFile(other, nil, 0o644) // keeps the old inode number from being reused at once
	if p4, _ := DefaultOverlayPath(img); p4 == p1 {
		t.Logf("inode reused for the new file; identity cannot tell (%s)", p4)
	}
}

func TestOverlayDirFallback(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/someone")
	d, err := OverlayDir()
	if err != nil || d != "/home/someone/.local/state/kvmify/overlays" {
		t.Errorf("OverlayDir = %q, %v", d, err)
	}
}

func vol(index int, kind fstype.Kind, err error, installs int) windows.Volume {
	v := windows.Volume{Partition: partition.Partition{Index: index}, FS: kind, NTFS: kind == fstype.NTFS, Err: err}
	if kind == fstype.BitLocker {
		v.State.BitLocker = true
	}
	for range installs {
		v.Installs = append(v.Installs, &windows.Install{Dir: "Windows"})
	}
	return v
}

func TestChooseVolumeSaysWhy(t *testing.T) {
	damaged := fmt.Errorf("hbin header at 0x1000 is damaged")
	for _, c := range []struct {
		name  string
		vols  []windows.Volume
		index int
		want  error
		usage bool
	}{
		{"truly none", []windows.Volume{vol(1, fstype.FAT, nil, 0), vol(2, fstype.NTFS, nil, 0)}, 0, ErrNoWindows, false},
		{"blank", nil, 0, ErrNoWindows, false},
		{"bitlocker", []windows.Volume{vol(1, fstype.NTFS, nil, 0), vol(2, fstype.BitLocker, errors.New("x"), 0)}, 0, ErrBitLocker, false},
		{"damaged", []windows.Volume{vol(1, fstype.NTFS, damaged, 0)}, 0, ErrUnreadable, false},
		{"damaged named", []windows.Volume{vol(1, fstype.NTFS, damaged, 0)}, 1, ErrUnreadable, false},
		{"two installs", []windows.Volume{vol(1, fstype.NTFS, nil, 1), vol(2, fstype.NTFS, nil, 1)}, 0, nil, true},
		{"no such", []windows.Volume{vol(1, fstype.NTFS, nil, 1)}, 3, nil, true},
	} {
		_, err := ChooseVolume(c.vols, c.index)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if IsUsage(err) != c.usage {
			t.Errorf("%s: usage=%v: %v", c.name, IsUsage(err), err)
		}
		if c.want == ErrUnreadable && !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: the cause is not named: %v", c.name, err)
		}
	}
	if v, err := ChooseVolume([]windows.Volume{vol(1, fstype.NTFS, damaged, 0), vol(2, fstype.NTFS, nil, 1)}, 0); err != nil || v.Partition.Index != 2 {
		t.Errorf("one readable install beside a damaged volume: %v %v", v.Partition.Index, err)
	}
}

func TestOpenSourceRefusesEmpty(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.img")
	os.WriteFile(p, nil, 0o644)
	if _, err := OpenSource(p); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("OpenSource(empty) = %v", err)
	}
}
