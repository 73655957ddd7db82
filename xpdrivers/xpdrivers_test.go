package xpdrivers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/kvmify/kvmify/cab"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/peversion"
)

// dirFS is a host directory seen as a Windows volume: `\`-separated
// paths resolved without regard to case (as windows.DirFS does).
type dirFS string

func (d dirFS) resolve(path string) (string, error) {
	cur := string(d)
	for _, part := range strings.Split(path, `\`) {
		if part == "" {
			continue
		}
		ents, err := os.ReadDir(cur)
		if err != nil {
			return "", err
		}
		found := false
		for _, e := range ents {
			if strings.EqualFold(e.Name(), part) {
				cur, found = filepath.Join(cur, e.Name()), true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("%s: %w", path, fs.ErrNotExist)
		}
	}
	return cur, nil
}

func (d dirFS) Open(path string) (disk.Reader, error) {
	p, err := d.resolve(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return bytesReader{bytes.NewReader(b)}, nil
}

func (d dirFS) ReadDir(path string) ([]string, error) {
	p, err := d.resolve(path)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

type bytesReader struct{ *bytes.Reader }

func (b bytesReader) Close() error { return nil }

// openOnly hides dirFS's ReadDir, so Find probes for cabinets.
type openOnly struct{ dirFS }

func (o openOnly) ReadDir() {}

// drv is a fake driver file: a PE image whose code names it and whose
// version resource states a build.
func drv(name string, build, rev uint16) []byte {
	return testutil.PEWithVersion(5, 1, build, rev, []byte(fmt.Sprintf("%s build %d.%d\x00", name, build, rev)))
}

// gcab builds a cabinet (MSZIP, as gcab -z makes) at path from files.
func gcab(t *testing.T, path string, files map[string][]byte) {
	t.Helper()
	bin := testutil.RequireTool(t, "gcab")
	src := t.TempDir()
	args := []string{"-c", "-z", "-n", path}
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
}

// cabextractSum is the sha256 of a member as cabextract extracts it.
func cabextractSum(t *testing.T, cabPath, member string) string {
	t.Helper()
	bin := testutil.RequireTool(t, "cabextract")
	out, err := exec.Command(bin, "-q", "-p", "-F", member, cabPath).Output()
	if err != nil {
		t.Fatalf("cabextract %s %s: %v", cabPath, member, err)
	}
	s := sha256.Sum256(out)
	return hex.EncodeToString(s[:])
}

// filler is a compressible file large enough to push the drivers into
// later CFDATA blocks of the folder.
func filler(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "filler line %d of a large member\r\n", i)
	}
	return b.Bytes()[:n]
}

// xpTree builds an install directory WINDOWS with a driver cache of
// driver.cab (XP RTM), sp2.cab and sp3.cab, and returns the volume root
// and the host path of the cache.
func xpTree(t *testing.T, index string) (string, string) {
	root := t.TempDir()
	cache := filepath.Join(root, "WINDOWS", "Driver Cache", "i386")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	gcab(t, filepath.Join(cache, "driver.cab"), map[string][]byte{
		"1394bus.sys":  drv("1394bus.sys", 2600, 0),
		"atapi.sys":    drv("atapi.sys", 2600, 0),
		"big.dat":      filler(200000),
		"intelide.sys": drv("intelide.sys", 2600, 0),
		"pciide.sys":   drv("pciide.sys", 2600, 0),
	})
	gcab(t, filepath.Join(cache, "sp2.cab"), map[string][]byte{
		"atapi.sys":    drv("atapi.sys", 2180, 0),
		"intelide.sys": drv("intelide.sys", 2180, 0),
		"usbport.sys":  drv("usbport.sys", 2180, 0),
	})
	gcab(t, filepath.Join(cache, "SP3.CAB"), map[string][]byte{
		"aaa.dat":   filler(100000),
		"ATAPI.SYS": drv("atapi.sys", 5512, 0),
	})
	if index != "" {
		if err := os.WriteFile(filepath.Join(cache, "drvindex.inf"), []byte(index), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, cache
}

const xpIndex = "[Version]\r\nsignature=\"$Windows NT$\"\r\nCabFiles=SP3,SP2,driver ; newest first\r\n\r\n" +
	"[driver]\r\n1394bus.sys\r\natapi.sys\r\n\r\n[SP2]\r\natapi.sys\r\n\r\n[SP3]\r\natapi.sys\r\n\r\n" +
	"[Cabs]\r\ndriver=driver.cab\r\nSP2=sp2.cab\r\nSP3=sp3.cab\r\n"

func TestFindHighestServicePack(t *testing.T) {
	root, cache := xpTree(t, xpIndex)
	for _, tc := range []struct {
		name string
		fsys FS
	}{{"listing", dirFS(root)}, {"probing", openOnly{dirFS(root)}}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Find(tc.fsys, `windows`, IDEDrivers())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct {
				cabinet string
				sp      int
				member  string
				build   uint32
			}{
				"atapi.sys":    {"SP3.CAB", 3, "ATAPI.SYS", 5512},
				"intelide.sys": {"sp2.cab", 2, "intelide.sys", 2180},
				"pciide.sys":   {"driver.cab", 0, "pciide.sys", 2600},
			}
			if len(res.Drivers) != len(want) {
				t.Fatalf("found %d drivers, want %d: %+v", len(res.Drivers), len(want), res)
			}
			for i, d := range res.Drivers {
				w := want[d.Name]
				if d.Name != IDEDrivers()[i] {
					t.Errorf("driver %d is %s, want the order asked for", i, d.Name)
				}
				// Probing names the cabinet as probed (sp3.cab), listing as
				// the directory holds it (SP3.CAB); NTFS finds it by either.
				if !strings.EqualFold(filepath.Base(strings.ReplaceAll(d.Cabinet, `\`, "/")), w.cabinet) || d.ServicePack != w.sp || d.Member != w.member {
					t.Errorf("%s from %s (SP %d) member %s, want %s (SP %d) member %s", d.Name, d.Cabinet, d.ServicePack, d.Member, w.cabinet, w.sp, w.member)
				}
				if !strings.HasPrefix(d.Cabinet, `windows\Driver Cache\i386\`) {
					t.Errorf("cabinet path %q is not the volume path", d.Cabinet)
				}
				rev := uint32(0)
				if d.Version != (peversion.Version{Major: 5, Minor: 1, Build: w.build, Revision: rev}) || d.VersionErr != nil {
					t.Errorf("%s version %v (%v), want 5.1.%d.0", d.Name, d.Version, d.VersionErr, w.build)
				}
				if got := cabextractSum(t, filepath.Join(cache, w.cabinet), w.member); got != d.SHA256 {
					t.Errorf("%s: sha256 %s, cabextract %s", d.Name, d.SHA256, got)
				}
				if s := sha256.Sum256(d.Data); hex.EncodeToString(s[:]) != d.SHA256 {
					t.Errorf("%s: SHA256 field is not Data's", d.Name)
				}
			}
			if len(res.Missing) != 1 || res.Missing[0] != "pciidex.sys" {
				t.Errorf("missing %v, want [pciidex.sys]", res.Missing)
			}
			var order []string
			for _, c := range res.Cabinets {
				order = append(order, fmt.Sprintf("%s:%d:%v", filepath.Base(strings.ReplaceAll(c.Path, `\`, "/")), c.ServicePack, c.Indexed))
			}
			// sp3.cab holds only atapi.sys, so sp2.cab and driver.cab are
			// searched too; the index names the cabinet "sp3.cab" while the
			// directory holds "SP3.CAB": one cabinet, indexed.
			if got := strings.Join(order, " "); got != "SP3.CAB:3:true sp2.cab:2:true driver.cab:0:true" &&
				got != "sp3.cab:3:true sp2.cab:2:true driver.cab:0:true" {
				t.Errorf("cabinets searched: %s", got)
			}
		})
	}
}

func TestFindWithoutIndex(t *testing.T) {
	root, _ := xpTree(t, "")
	res, err := Find(dirFS(root), `WINDOWS`, []string{"intelide.sys", "PCIIDE.SYS", "atapi.sys"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, d := range res.Drivers {
		got[d.Name] = d.ServicePack
	}
	if got["intelide.sys"] != 2 || got["PCIIDE.SYS"] != 0 || got["atapi.sys"] != 3 || len(res.Missing) != 0 {
		t.Errorf("without drvindex.inf: %v, missing %v", got, res.Missing)
	}
}

func TestFindIndexNotes(t *testing.T) {
	// A UTF-16 index naming an absent sp4.cab and a cabinet outside the
	// spN scheme, which ranks below driver.cab.
	idx := "[Version]\r\nCabFiles=SP4,SP3,driver,extra\r\n[Cabs]\r\nSP4=sp4.cab\r\nSP3=sp3.cab\r\ndriver=driver.cab\r\nextra=extra.cab\r\nbad=..\\evil.cab\r\n"
	u := utf16.Encode([]rune(idx))
	b := []byte{0xFF, 0xFE}
	for _, x := range u {
		b = append(b, byte(x), byte(x>>8))
	}
	root, cache := xpTree(t, string(b))
	gcab(t, filepath.Join(cache, "extra.cab"), map[string][]byte{"pciidex.sys": drv("pciidex.sys", 9999, 1)})
	res, err := Find(dirFS(root), `WINDOWS\`, IDEDrivers())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 0 {
		t.Errorf("missing %v", res.Missing)
	}
	for _, d := range res.Drivers {
		if d.Name == "pciidex.sys" && (d.ServicePack != -1 || !strings.HasSuffix(d.Cabinet, `\extra.cab`) || d.Version.Build != 9999) {
			t.Errorf("pciidex.sys from %s SP %d version %v", d.Cabinet, d.ServicePack, d.Version)
		}
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, `sp4.cab is named in drvindex.inf but absent`) || !strings.Contains(notes, `evil.cab`) {
		t.Errorf("notes:\n%s", notes)
	}
}

func TestFindNoCache(t *testing.T) {
	root := t.TempDir()
	res, err := Find(dirFS(root), `WINDOWS`, IDEDrivers())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drivers) != 0 || len(res.Missing) != 4 || len(res.Cabinets) != 0 {
		t.Errorf("no driver cache: %+v", res)
	}
}

func TestFindCorruptCabinet(t *testing.T) {
	root, cache := xpTree(t, xpIndex)
	p := filepath.Join(cache, "SP3.CAB")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Damage the data of sp3.cab's first block, which every member needs
	// decoded: its checksum fails, and Find must not quietly fall back to
	// sp2.cab's older atapi.sys.
	c, err := cab.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	b[c.Folders[0].DataOffset+8+10] ^= 0xFF
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Find(dirFS(root), `WINDOWS`, IDEDrivers())
	if !errors.Is(err, cab.ErrChecksum) || !strings.Contains(err.Error(), `SP3.CAB`) {
		t.Errorf("corrupt sp3.cab: %v, want a checksum error naming it", err)
	}
	if err := os.WriteFile(p, []byte("MSCF"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Find(dirFS(root), `WINDOWS`, IDEDrivers())
	var fe *cab.FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `SP3.CAB`) {
		t.Errorf("truncated sp3.cab: %v, want a cab.FormatError naming it", err)
	}
}
