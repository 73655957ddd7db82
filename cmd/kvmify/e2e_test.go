package main

// End-to-end tests of the product path: a disk image built from a real
// Windows SYSTEM hive is inspected, served patched over NBD and mounted
// through FUSE, and the result is read back by independent tools (qemu-img,
// ntfs-3g's ntfscat/ntfscluster, libhivex, QEMU itself).

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/kvmify/kvmify/internal/testutil"
)

const sectorSize = 512

// partStart is where scripts/mkdisk.sh puts the NTFS partition.
const partStart = 1 << 20

// winDisk builds a disk image holding a Windows tree with the given corpus
// hive as SYSTEM (and its logs, as suffixes such as ".LOG1", beside it), the
// usual storage driver files and a boot.ini, read-only like evidence.
func winDisk(t *testing.T, hive string, logs ...string) string {
	t.Helper()
	var drivers []string
	for _, d := range []string{"atapi", "intelide", "pciide", "pciidex", "msahci", "storahci", "storport", "ataport", "disk", "classpnp", "partmgr", "volmgr"} {
		drivers = append(drivers, d+".sys")
	}
	tree := testutil.WindowsTree(t, hive, logs, drivers...)
	os.WriteFile(filepath.Join(tree, "boot.ini"), []byte("[boot loader]\r\n"), 0o644)
	img := testutil.MkDisk(t, tree, 64)
	os.Chmod(img, 0o444)
	return img
}

type e2eInspect struct {
	Partitions []struct {
		Index   int `json:"index"`
		Windows *struct {
			Version   string `json:"version"`
			HiveState string `json:"hive_state"`
			Targets   map[string]struct {
				OK     bool   `json:"ok"`
				Reason string `json:"reason"`
			} `json:"targets"`
		} `json:"windows"`
	} `json:"partitions"`
}

// predicts runs "kvmify inspect --json" and returns whether target boots.
func predicts(t *testing.T, bin, img, target string) (bool, string) {
	t.Helper()
	out, err := exec.Command(bin, "inspect", "--json", img).Output()
	if err != nil {
		t.Fatalf("inspect %s: %v\n%s", img, err, out)
	}
	var rep e2eInspect
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("inspect JSON: %v\n%s", err, out)
	}
	for _, p := range rep.Partitions {
		if p.Windows != nil {
			tg, ok := p.Windows.Targets[target]
			if !ok {
				t.Fatalf("inspect has no prediction for %s", target)
			}
			return tg.OK, tg.Reason
		}
	}
	t.Fatalf("inspect found no Windows on %s:\n%s", img, out)
	return false, ""
}

type e2eChange struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Op    string `json:"op"`
	Type  string `json:"type"`
	New   any    `json:"new"`
}

// serveAndConvert serves img patched for target over NBD, copies the export
// with qemu-img convert, and returns the copy; the server is stopped with
// SIGTERM and must exit 0.
func serveAndConvert(t *testing.T, bin, img, target string, boot bool) string {
	t.Helper()
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	sock := filepath.Join(dir, "nbd.sock")
	var stderr bytes.Buffer
	srv := exec.Command(bin, "serve", img, "--target", target, "--ephemeral", "--unix", sock)
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	waitSocket(t, sock, &stderr)
	uri := "nbd+unix:///?socket=" + sock
	out := filepath.Join(dir, "export.raw")
	if b, err := exec.Command(qemuImg, "convert", "-f", "raw", "-O", "raw", uri, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert of the export: %v\n%s\nserver: %s", err, b, stderr.String())
	}
	if boot {
		bootsFromNBD(t, uri)
	}
	srv.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on SIGINT\n%s", stderr.String())
	}
	return out
}

func waitSocket(t *testing.T, sock string, stderr *bytes.Buffer) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not create %s\n%s", sock, stderr.String())
}

// bootsFromNBD boots QEMU from the export and waits for the marker the test
// disk's boot code prints on the serial port.
func bootsFromNBD(t *testing.T, uri string) {
	t.Helper()
	qemu := testutil.RequireTool(t, "qemu-system-x86_64")
	serial := filepath.Join(t.TempDir(), "serial.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm := exec.CommandContext(ctx, qemu, "-display", "none", "-no-reboot", "-m", "64",
		"-serial", "file:"+serial, "-drive", "file="+uri+",format=raw,if=ide")
	var out bytes.Buffer
	vm.Stdout, vm.Stderr = &out, &out
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { vm.Process.Kill(); vm.Wait() }()
	for ctx.Err() == nil {
		if b, _ := os.ReadFile(serial); bytes.Contains(b, []byte("KVMIFY-BOOT-OK")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(serial)
	t.Fatalf("QEMU did not print the boot marker from %s; serial: %q; qemu: %s", uri, b, out.String())
}

// partition copies the NTFS partition out of a disk image, for ntfs-3g's
// tools, which take a volume.
func partition(t *testing.T, img string) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "part.img")
	if err := os.WriteFile(p, b[partStart:], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ntfscat reads a file from a volume with ntfs-3g's ntfscat.
func ntfscat(t *testing.T, vol, path string) []byte {
	t.Helper()
	out, err := exec.Command(testutil.RequireTool(t, "ntfscat"), vol, path).Output()
	if err != nil {
		t.Fatalf("ntfscat %s: %v", path, err)
	}
	return out
}

// changedOnlyInHive asserts that every sector differing between the source
// and the patched copy belongs to the SYSTEM hive, as ntfscluster sees it.
func changedOnlyInHive(t *testing.T, src, patched string) {
	t.Helper()
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(patched)
	if len(a) != len(b) {
		t.Fatalf("patched disk is %d bytes, source %d", len(b), len(a))
	}
	vol := partition(t, src)
	ntfscluster := testutil.RequireTool(t, "ntfscluster")
	changed := 0
	for s := 0; s < len(a)/sectorSize; s++ {
		lo, hi := s*sectorSize, (s+1)*sectorSize
		if bytes.Equal(a[lo:hi], b[lo:hi]) {
			continue
		}
		changed++
		if lo < partStart {
			t.Fatalf("sector %d (before the partition) changed", s)
		}
		// Group runs of changed sectors into one ntfscluster query.
		e := s
		for e+1 < len(a)/sectorSize && !bytes.Equal(a[(e+1)*sectorSize:(e+2)*sectorSize], b[(e+1)*sectorSize:(e+2)*sectorSize]) {
			e++
		}
		changed += e - s
		rel0, rel1 := (lo-partStart)/sectorSize, (e+1)*sectorSize/sectorSize-partStart/sectorSize-1
		if e == s && onlyGeometryFields(a[lo:hi], b[lo:hi]) {
			// XP's boot sector (or its backup at the volume's end) with
			// the heads and sectors per track the firmware reports.
			s = e
			continue
		}
		out, err := exec.Command(ntfscluster, "-s", fmt.Sprintf("%d-%d", rel0, rel1), vol).CombinedOutput()
		if err != nil {
			t.Fatalf("ntfscluster -s %d-%d: %v\n%s", rel0, rel1, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Inode ") && !strings.Contains(line, "/Windows/System32/config/SYSTEM") {
				t.Errorf("changed sectors %d-%d of the volume belong to %q, not the SYSTEM hive", rel0, rel1, line)
			}
		}
		if !strings.Contains(string(out), "/Windows/System32/config/SYSTEM") {
			t.Errorf("changed sectors %d-%d of the volume are not the SYSTEM hive's:\n%s", rel0, rel1, out)
		}
		s = e
	}
	if changed == 0 {
		t.Fatal("the patched disk equals the source")
	}
	t.Logf("%d sectors changed, all within the SYSTEM hive", changed)
}

// onlyGeometryFields reports whether two NTFS boot sectors differ only in
// the BPB's sectors per track and heads (bytes 0x18-0x1B).
func onlyGeometryFields(a, b []byte) bool {
	if string(a[3:11]) != "NTFS    " {
		return false
	}
	for i := range a {
		if a[i] != b[i] && (i < 0x18 || i >= 0x1c) {
			return false
		}
	}
	return true
}

// sameOtherFiles asserts every file but the hive reads the same on both
// volumes, through ntfs-3g.
func sameOtherFiles(t *testing.T, srcVol, patchedVol string) {
	t.Helper()
	for _, f := range []string{"boot.ini", "Windows/System32/drivers/atapi.sys", "Windows/System32/drivers/pciide.sys", "Windows/System32/drivers/storahci.sys"} {
		if !bytes.Equal(ntfscat(t, srcVol, f), ntfscat(t, patchedVol, f)) {
			t.Errorf("%s differs after patching", f)
		}
	}
}

// hivexValues reads (key, value) pairs from a hive with libhivex.
func hivexValues(t *testing.T, hive string, kv [][2]string) []*struct {
	Type int    `json:"type"`
	Hex  string `json:"hex"`
} {
	t.Helper()
	py := testutil.RequirePython3Module(t, "hivex")
	in, _ := json.Marshal(kv)
	cmd := exec.Command(py, filepath.Join("testdata", "hivex_values.py"), hive)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hivex: %v", err)
	}
	var res []*struct {
		Type int    `json:"type"`
		Hex  string `json:"hex"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// render turns raw registry data into the plan's JSON rendering.
func render(typ int, raw []byte) any {
	switch typ {
	case 4:
		if len(raw) >= 4 {
			return float64(binary.LittleEndian.Uint32(raw))
		}
	case 1, 2:
		return utf16String(raw)
	case 7:
		var out []any
		for _, s := range strings.Split(utf16String(raw), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return hex.EncodeToString(raw)
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return strings.TrimRight(string(utf16.Decode(u)), "\x00")
}

// planChanges runs "kvmify plan --json".
func planChanges(t *testing.T, bin, img, target string) []e2eChange {
	t.Helper()
	out, err := exec.Command(bin, "plan", "--json", "--target", target, img).Output()
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	var p struct {
		Changes []e2eChange `json:"registry_changes"`
		Extents []struct {
			Offset, Length int64
			What           string
		} `json:"extents"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) == 0 || len(p.Extents) == 0 {
		t.Fatalf("plan lists no changes or no extents:\n%s", out)
	}
	return p.Changes
}

// hiveHas asserts with libhivex that the hive holds every planned change and
// the must-have values the issue names.
func hiveHas(t *testing.T, hive string, changes []e2eChange, must map[[2]string]any) {
	t.Helper()
	var kv [][2]string
	var want []any
	for _, c := range changes {
		kv = append(kv, [2]string{c.Key, c.Value})
		if c.Op == "delete" {
			want = append(want, nil)
		} else {
			want = append(want, c.New)
		}
	}
	for k, v := range must {
		kv = append(kv, k)
		want = append(want, v)
	}
	got := hivexValues(t, hive, kv)
	for i := range kv {
		g := got[i]
		switch {
		case want[i] == nil && g != nil:
			t.Errorf("%s\\%s still present after delete", kv[i][0], kv[i][1])
		case want[i] != nil && g == nil:
			t.Errorf("%s\\%s missing in the patched hive (hivex)", kv[i][0], kv[i][1])
		case g != nil:
			raw, _ := hex.DecodeString(g.Hex)
			gj, _ := json.Marshal(render(g.Type, raw))
			wj, _ := json.Marshal(want[i])
			if !strings.EqualFold(string(gj), string(wj)) {
				t.Errorf("%s\\%s = %s (hivex), want %s", kv[i][0], kv[i][1], gj, wj)
			}
		}
	}
}

type e2eCase struct {
	hive   string
	logs   []string
	target string
	must   map[[2]string]any
	boot   bool
}

func runE2E(t *testing.T, c e2eCase) {
	if testing.Short() {
		t.Skip("end-to-end test; -short")
	}
	bin := testutil.BuildKvmify(t)
	img := winDisk(t, c.hive, c.logs...)
	srcHash := testutil.FileSHA256(t, img)

	if ok, reason := predicts(t, bin, img, c.target); ok {
		t.Fatalf("inspect predicts %s boots before patching (%s)", c.target, reason)
	}
	changes := planChanges(t, bin, img, c.target)

	out := serveAndConvert(t, bin, img, c.target, c.boot)
	if ok, reason := predicts(t, bin, out, c.target); !ok {
		t.Fatalf("inspect of the served disk predicts 0x7B on %s: %s", c.target, reason)
	}
	changedOnlyInHive(t, img, out)
	srcVol, outVol := partition(t, img), partition(t, out)
	sameOtherFiles(t, srcVol, outVol)
	hive := filepath.Join(t.TempDir(), "SYSTEM")
	os.WriteFile(hive, ntfscat(t, outVol, "Windows/System32/config/SYSTEM"), 0o644)
	hiveHas(t, hive, changes, c.must)
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}

	// The same through the FUSE disk.img.
	fuseOut := mountAndCopy(t, bin, img, c.target)
	fb, _ := os.ReadFile(fuseOut.disk)
	nb, _ := os.ReadFile(out)
	if !bytes.Equal(fb, nb) {
		changedOnlyInHive(t, img, fuseOut.disk)
		t.Error("the FUSE disk.img differs from the NBD export")
	}
	if !bytes.Equal(fuseOut.patched, ntfscat(t, outVol, "Windows/System32/config/SYSTEM")) {
		t.Error("SYSTEM.patched differs from the hive on the patched disk")
	}
	if !bytes.Equal(fuseOut.original, ntfscat(t, srcVol, "Windows/System32/config/SYSTEM")) {
		t.Error("SYSTEM.original differs from the hive on the source")
	}
	if !bytes.Contains(fuseOut.report, []byte(`"registry_changes"`)) {
		t.Error("report.json lacks the registry changes")
	}
	if testutil.FileSHA256(t, img) != srcHash {
		t.Fatal("the source image changed")
	}
}

type fuseCopy struct {
	disk                      string
	patched, original, report []byte
}

// mountAndCopy mounts img patched through FUSE and copies what it shows.
func mountAndCopy(t *testing.T, bin, img, target string) fuseCopy {
	t.Helper()
	if os.Geteuid() != 0 {
		if testutil.InCI() {
			t.Fatal("FUSE needs root")
		}
		t.Skip("FUSE needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	var stderr bytes.Buffer
	m := exec.Command(bin, "mount", img, mnt, "--target", target, "--ephemeral")
	m.Stderr = &stderr
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		m.Process.Kill()
		m.Wait()
		exec.Command("umount", "-l", mnt).Run()
	}()
	for i := 0; i < 600; i++ {
		if _, err := os.Stat(filepath.Join(mnt, "disk.img")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var c fuseCopy
	c.disk = filepath.Join(dir, "disk.raw")
	testutil.CopyFile(t, filepath.Join(mnt, "disk.img"), c.disk)
	var err error
	if c.patched, err = os.ReadFile(filepath.Join(mnt, "SYSTEM.patched")); err != nil {
		t.Fatalf("SYSTEM.patched: %v\n%s", err, stderr.String())
	}
	if c.original, err = os.ReadFile(filepath.Join(mnt, "SYSTEM.original")); err != nil {
		t.Fatal(err)
	}
	if c.report, err = os.ReadFile(filepath.Join(mnt, "report.json")); err != nil {
		t.Fatal(err)
	}
	m.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- m.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mount exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("mount did not stop on SIGINT\n%s", stderr.String())
	}
	return c
}

const cddb = `ControlSet001\Control\CriticalDeviceDatabase\`

func TestEndToEndXPIDE(t *testing.T) {
	runE2E(t, e2eCase{hive: "xp-sp3-x86.SYSTEM", target: "ide", boot: true, must: map[[2]string]any{
		{cddb + `pci#ven_8086&dev_7010`, "Service"}:   "intelide",
		{cddb + `pci#ven_8086&dev_7010`, "ClassGUID"}: "{4D36E96A-E325-11CE-BFC1-08002BE10318}",
		{cddb + `pci#cc_0101`, "Service"}:             "pciide",
		{cddb + `primary_ide_channel`, "Service"}:     "atapi",
		{cddb + `gendisk`, "Service"}:                 "disk",
		{`ControlSet001\Services\PCIIde`, "Start"}:    float64(0),
		{`ControlSet001\Services\IntelIde`, "Start"}:  float64(0),
		{`ControlSet001\Services\atapi`, "Start"}:     float64(0),
	}})
}

func TestEndToEndWin7AHCI(t *testing.T) {
	runE2E(t, e2eCase{hive: "win7-sp1-x64.SYSTEM", target: "ahci", must: map[[2]string]any{
		{`ControlSet001\Services\msahci`, "Start"}: float64(0),
	}})
}

func TestEndToEndWin10AHCIFromLogs(t *testing.T) {
	runE2E(t, e2eCase{hive: "win10-1709-x64.SYSTEM", logs: []string{".LOG1", ".LOG2"}, target: "ahci", must: map[[2]string]any{
		{`ControlSet001\Services\storahci`, "Start"}: float64(0),
	}})
}
