// Package xpdrivers finds the IDE drivers MergeIDE (KB314082) needs in a
// Windows XP or Server 2003 install's own driver cabinets: XP setup copies
// only the drivers of the hardware it saw, but keeps every in-box driver
// in %SystemRoot%\Driver Cache\i386\driver.cab and each service pack's
// newer copies in spN.cab. For each file asked for, the copy from the
// highest service pack's cabinet that holds it wins, as the newest build
// the install has; the result names the cabinet and member each came from
// and the file version its version resource states.
//
// It reads through a minimal FS so that package windows (its caller) can
// hand it any volume view; it never writes.
package xpdrivers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/kvmify/kvmify/cab"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/peversion"
)

// FS is the read-only file access Find needs from the install's volume.
// Paths are relative to the volume root, separated by `\`, and matched
// without regard to case, as on NTFS.
type FS interface {
	// Open returns a file's content; a missing file is an error matching
	// fs.ErrNotExist.
	Open(path string) (disk.Reader, error)
}

// DirLister is an FS that can also list a directory's entry names. With
// it Find sees every spN.cab present; without it Find probes sp1.cab to
// sp<maxProbedSP>.cab.
type DirLister interface {
	ReadDir(path string) ([]string, error)
}

const (
	// CacheDir is where XP keeps its driver cabinets, under %SystemRoot%.
	CacheDir = `Driver Cache\i386`
	// baseCabinet holds the drivers of the release the install started as.
	baseCabinet = "driver.cab"
	// indexINF lists the cabinets (and their files) setup searches.
	indexINF = "drvindex.inf"
	// maxProbedSP covers XP (SP1..SP3) and Server 2003 (SP1, SP2) with room.
	maxProbedSP = 9
	// maxDriverSize bounds a member read into memory; IDE drivers are
	// tens of KiB.
	maxDriverSize = 16 << 20
)

// IDEDrivers returns the driver files MergeIDE's registry entries start,
// which must exist in System32\drivers for the fix to boot.
func IDEDrivers() []string {
	return []string{"atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys"}
}

// Cabinet is one cabinet Find searched.
type Cabinet struct {
	Path string // volume path
	// ServicePack is N for spN.cab, 0 for driver.cab and -1 for another
	// cabinet drvindex.inf names.
	ServicePack int
	Indexed     bool // named in drvindex.inf
}

// Driver is one driver file taken from a cabinet.
type Driver struct {
	Name        string // as asked for, e.g. "pciide.sys"
	Member      string // the member's name in the cabinet
	Cabinet     string // volume path of the cabinet
	ServicePack int    // the cabinet's, as in Cabinet
	Data        []byte
	SHA256      string // hex, of Data
	// Version is the file version of the driver's version resource;
	// VersionErr says why there is none when it is zero.
	Version    peversion.Version
	VersionErr error
}

// Result is what Find found.
type Result struct {
	Cabinets []Cabinet // searched, highest service pack first
	Drivers  []Driver  // found, in the order asked for
	Missing  []string  // asked for but in no cabinet
	// Notes record what does not stop the search but a reader should
	// know: a cabinet drvindex.inf names that is absent, an unreadable
	// drvindex.inf.
	Notes []string
}

// Find looks for each of names (e.g. IDEDrivers()) in the driver
// cabinets under systemRoot (the install's directory, e.g. `WINDOWS`) and
// extracts the copy from the highest service pack's cabinet holding it. A
// cabinet that exists but cannot be read is an error, not a reason to fall
// back to an older copy.
func Find(fsys FS, systemRoot string, names []string) (*Result, error) {
	dir := strings.TrimSuffix(systemRoot, `\`) + `\` + CacheDir
	res := &Result{}
	cabs, err := cabinets(fsys, dir, res)
	if err != nil {
		return nil, err
	}
	found := map[string]*Driver{}
	for _, c := range cabs {
		var todo []string
		for _, n := range names {
			if found[strings.ToLower(n)] == nil {
				todo = append(todo, n)
			}
		}
		if len(todo) == 0 {
			break
		}
		r, err := fsys.Open(c.Path)
		if errors.Is(err, fs.ErrNotExist) && c.Indexed {
			res.Notes = append(res.Notes, fmt.Sprintf("%s is named in %s but absent", c.Path, indexINF))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xpdrivers: opening %s: %w", c.Path, err)
		}
		res.Cabinets = append(res.Cabinets, c)
		if err := extract(r, c, todo, found); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		if d := found[strings.ToLower(n)]; d != nil {
			res.Drivers = append(res.Drivers, *d)
		} else {
			res.Missing = append(res.Missing, n)
		}
	}
	return res, nil
}

// extract takes each of names the cabinet holds into found.
func extract(r disk.Reader, c Cabinet, names []string, found map[string]*Driver) error {
	cb, err := cab.Open(r, r.Size())
	if err != nil {
		return fmt.Errorf("xpdrivers: %s: %w", c.Path, err)
	}
	var here []string
	for _, n := range names {
		if f, ok := cb.Lookup(n); ok {
			if f.Size > maxDriverSize {
				return fmt.Errorf("xpdrivers: %s: member %s is %d bytes, over the %d a driver may be", c.Path, f.Name, f.Size, maxDriverSize)
			}
			here = append(here, n)
		}
	}
	if len(here) == 0 {
		return nil
	}
	asked := map[string]string{}
	for _, n := range here {
		f, _ := cb.Lookup(n)
		asked[f.Name] = n
	}
	err = cb.Extract(here, func(f *cab.File, rd io.Reader) error {
		data := make([]byte, f.Size)
		if _, err := io.ReadFull(rd, data); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		d := &Driver{
			Name: asked[f.Name], Member: f.Name, Cabinet: c.Path, ServicePack: c.ServicePack,
			Data: data, SHA256: hex.EncodeToString(sum[:]),
		}
		d.Version, d.VersionErr = peversion.Read(data)
		found[strings.ToLower(d.Name)] = d
		return nil
	})
	if err != nil {
		return fmt.Errorf("xpdrivers: %s: %w", c.Path, err)
	}
	return nil
}

// cabinets lists the cabinets to search in dir, highest service pack
// first: driver.cab, every spN.cab present (listed, or probed), and every
// cabinet drvindex.inf's [Cabs] section names. Cabinets drvindex.inf names
// keep its CabFiles order among themselves where service packs tie.
func cabinets(fsys FS, dir string, res *Result) ([]Cabinet, error) {
	type cand struct {
		Cabinet
		order int
	}
	byName := map[string]*cand{}
	add := func(name string, indexed bool, order int) {
		key := strings.ToLower(name)
		if c, ok := byName[key]; ok {
			c.Indexed = c.Indexed || indexed
			if indexed {
				c.order = order
			}
			return
		}
		byName[key] = &cand{Cabinet{Path: dir + `\` + name, ServicePack: servicePack(name), Indexed: indexed}, order}
	}
	probe := func(name string) error {
		_, err := fsys.Open(dir + `\` + name)
		if err == nil {
			add(name, false, 1<<30)
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("xpdrivers: opening %s\\%s: %w", dir, name, err)
	}

	if err := probe(baseCabinet); err != nil {
		return nil, err
	}
	if l, ok := fsys.(DirLister); ok {
		ents, err := l.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("xpdrivers: listing %s: %w", dir, err)
		}
		for _, e := range ents {
			if servicePack(e) > 0 {
				add(e, false, 1<<30)
			}
		}
	} else {
		for n := 1; n <= maxProbedSP; n++ {
			if err := probe("sp" + strconv.Itoa(n) + ".cab"); err != nil {
				return nil, err
			}
		}
	}
	if err := readIndex(fsys, dir, res, add); err != nil {
		return nil, err
	}

	var list []*cand
	for _, c := range byName {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.ServicePack != b.ServicePack {
			return a.ServicePack > b.ServicePack
		}
		if a.order != b.order {
			return a.order < b.order
		}
		return strings.ToLower(a.Path) < strings.ToLower(b.Path)
	})
	out := make([]Cabinet, len(list))
	for i, c := range list {
		out[i] = c.Cabinet
	}
	return out, nil
}

// readIndex adds the cabinets drvindex.inf names: [Version] CabFiles lists
// section names in the order setup searches them, and [Cabs] maps each
// section name to its cabinet's file name.
func readIndex(fsys FS, dir string, res *Result, add func(name string, indexed bool, order int)) error {
	path := dir + `\` + indexINF
	r, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xpdrivers: opening %s: %w", path, err)
	}
	if r.Size() > maxINF {
		res.Notes = append(res.Notes, fmt.Sprintf("%s is %d bytes, over %d: not read", path, r.Size(), maxINF))
		return nil
	}
	b := make([]byte, r.Size())
	if _, err := r.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("xpdrivers: reading %s: %w", path, err)
	}
	f, err := parseINF(b)
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: %v: not used", path, err))
		return nil
	}
	order := map[string]int{}
	if v, ok := f.value("Version", "CabFiles"); ok {
		for i, s := range splitList(v) {
			order[strings.ToLower(s)] = i
		}
	}
	for _, l := range f["cabs"] {
		name := l.value
		if name == "" || strings.ContainsAny(name, `\/`) || name == "." || name == ".." {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: [Cabs] entry %q ignored", path, l.key+"="+l.value))
			continue
		}
		o, ok := order[strings.ToLower(l.key)]
		if !ok {
			o = len(order) + 1
		}
		add(name, true, o)
	}
	return nil
}

// servicePack is N for a cabinet named spN.cab, 0 for driver.cab and -1
// otherwise.
func servicePack(name string) int {
	lower := strings.ToLower(name)
	if lower == baseCabinet {
		return 0
	}
	if num, ok := strings.CutPrefix(lower, "sp"); ok {
		if num, ok = strings.CutSuffix(num, ".cab"); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 && n < 100 {
				return n
			}
		}
	}
	return -1
}
