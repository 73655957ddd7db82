package launch

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/partition"
)

// pciID is each controller's vendor:device as the guest sees it.
var pciID = map[Controller]string{IDE: "8086:7010", AHCI: "8086:2922", NVMe: "1b36:0010"}

// serveWithQemuNBD exports img on a unix socket with qemu-nbd, the peer
// whose NBD server QEMU is known to boot from.
func serveWithQemuNBD(t *testing.T, img string) string {
	t.Helper()
	qnbd := testutil.RequireTool(t, "qemu-nbd")
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	cmd := exec.Command(qnbd, "-f", "raw", "-t", "-k", sock, img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("qemu-nbd did not create its socket")
	return ""
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// qemuIO runs a qemu-io command on the guest's disk through the monitor;
// QEMU prints qemu-io's answer on its standard output, not in the reply.
func qemuIO(t *testing.T, q *testutil.QMP, out *syncBuffer, cmd, want string) {
	t.Helper()
	n := len(out.String())
	q.HMP(t, fmt.Sprintf("qemu-io %s \"%s\"", DiskID, cmd))
	for i := 0; i < 100; i++ {
		got := out.String()[n:]
		if strings.Contains(got, want) {
			return
		}
		if strings.Contains(got, "fail") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("qemu-io %q: want %q, QEMU printed %q", cmd, want, out.String()[n:])
}

// startQEMU runs qemu-system-x86_64 with args, paused, with a QMP socket.
func startQEMU(t *testing.T, args []string) (*testutil.QMP, *syncBuffer) {
	t.Helper()
	qemu := testutil.RequireTool(t, QEMUBinary)
	qmpSock := filepath.Join(t.TempDir(), "qmp.sock")
	args = append(args, "-S", "-qmp", "unix:"+qmpSock+",server=on,wait=off")
	cmd := exec.Command(qemu, args...)
	var stderr bytes.Buffer
	stdout := &syncBuffer{}
	cmd.Stderr, cmd.Stdout = &stderr, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(qmpSock); err == nil {
			return testutil.DialQMP(t, qmpSock, 10*time.Second), stdout
		}
		select {
		case err := <-done:
			t.Fatalf("QEMU exited: %v\n%s\nargs: %s", err, stderr.String(), ShellQuote(args))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("QEMU made no QMP socket\n%s", stderr.String())
	return nil, nil
}

func patternDisk(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "disk.raw")
	b := make([]byte, 16<<20)
	for i := range b[:4096] {
		b[i] = 0x5a
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestControllersInGuest starts the VM each profile describes and asks QEMU
// which PCI devices the guest has and whether its disk reads the export.
func TestControllersInGuest(t *testing.T) {
	img := patternDisk(t)
	sock := serveWithQemuNBD(t, img)
	kvmOK, why := KVMUsable()
	for _, ctl := range []Controller{IDE, AHCI, NVMe} {
		t.Run(string(ctl), func(t *testing.T) {
			p, err := NewProfile(Facts{Controller: ctl, Firmware: BIOS, WindowsMajor: 10}, Options{}, kvmOK, why)
			if err != nil {
				t.Fatal(err)
			}
			args, err := QEMUArgs(p, Disk{Socket: sock}, UEFIFiles{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			q, out := startQEMU(t, args)
			ids := strings.Join(q.PCIIDs(t), " ")
			for c, id := range pciID {
				has := strings.Contains(ids, id)
				if c == ctl && !has {
					t.Errorf("guest lacks the %s controller %s: %s", c, id, ids)
				}
				// The other disk controllers must be absent, except the
				// machine's built-in one when the disk is on NVMe.
				if c != ctl && has && !(ctl == NVMe && c == AHCI) {
					t.Errorf("guest has the %s controller %s as well: %s", c, id, ids)
				}
			}
			qemuIO(t, q, out, "read -P 0x5a 0 4096", "read 4096/4096 bytes")
			var blocks []struct {
				Device   string `json:"device"`
				QDev     string `json:"qdev"`
				Inserted struct {
					Drv string `json:"drv"`
				} `json:"inserted"`
			}
			q.Run(t, "query-block", nil, &blocks)
			found := false
			for _, b := range blocks {
				if b.Device == DiskID {
					found = true
				}
			}
			if !found {
				t.Errorf("no block device %s: %+v", DiskID, blocks)
			}
			q.Exec("quit", nil, nil)
		})
	}
}

// TestReadOnlyExportBoots checks that a read-only export, which QEMU refuses
// as a plain drive ("Block node is read-only"), starts with snapshot=on and
// takes guest writes into QEMU's temporary file.
func TestReadOnlyExportBoots(t *testing.T) {
	img := patternDisk(t)
	qnbd := testutil.RequireTool(t, "qemu-nbd")
	sock := filepath.Join(t.TempDir(), "ro.sock")
	cmd := exec.Command(qnbd, "-f", "raw", "-t", "--read-only", "-k", sock, img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := testutil.FileSHA256(t, img)
	p, _ := NewProfile(Facts{Controller: AHCI, Firmware: BIOS, WindowsMajor: 6, WindowsMinor: 1}, Options{ReadOnly: true}, KVMUsableBool(), "")
	args, err := QEMUArgs(p, Disk{Socket: sock}, UEFIFiles{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, out := startQEMU(t, args)
	qemuIO(t, q, out, "write -P 0x11 0 4096", "wrote 4096/4096 bytes")
	qemuIO(t, q, out, "read -P 0x11 0 4096", "read 4096/4096 bytes")
	q.Exec("quit", nil, nil)
	if after := testutil.FileSHA256(t, img); after != before {
		t.Fatal("the read-only export's file changed")
	}
}

// KVMUsableBool is KVMUsable's first answer.
func KVMUsableBool() bool { ok, _ := KVMUsable(); return ok }

// TestUEFIBootsGPTDisk boots a GPT disk with an EFI System Partition under
// the profile's OVMF firmware, from an NBD export, to the marker its boot
// loader prints on the serial console; the VM's variable store is its own
// copy, made once and kept.
func TestUEFIBootsGPTDisk(t *testing.T) {
	if _, _, err := FindOVMF(); err != nil {
		if testutil.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	img := testutil.EFIDisk(t)
	tab := readTable(t, img)
	mode := DetectBootMode(tab)
	if mode.Firmware != UEFI || mode.ESP != 1 {
		t.Fatalf("boot mode of the GPT disk: %+v", mode)
	}
	sock := serveWithQemuNBD(t, img)
	vars := VarsPath(filepath.Join(t.TempDir(), "efi.img.kvmify-overlay"))
	uefi, err := PrepareVars(vars, false)
	if err != nil {
		t.Fatal(err)
	}
	_, tmpl, _ := FindOVMF()
	if testutil.FileSHA256(t, vars) != testutil.FileSHA256(t, tmpl) {
		t.Fatal("the VM's variable store is not a copy of the template")
	}
	kvmOK, why := KVMUsable()
	console := bootToPowerOff(t, Facts{Controller: AHCI, Firmware: mode.Firmware}, Options{}, kvmOK, why, sock, uefi)
	if kvmOK && strings.Contains(console, "KVM internal error") {
		// Some nested hypervisors (this project's CI machine's among them)
		// cannot run OVMF under KVM: its early code executes an x87
		// instruction KVM's emulator does not handle. TCG runs the same
		// firmware and disk.
		t.Logf("KVM cannot run OVMF on this host; booting under TCG instead")
		console = bootToPowerOff(t, Facts{Controller: AHCI, Firmware: mode.Firmware}, Options{Accel: "tcg"}, kvmOK, why, sock, uefi)
	}
	if !strings.Contains(console, testutil.UEFIMarker) {
		t.Fatalf("the UEFI boot loader's marker did not appear; console:\n%s", console)
	}
	// A second preparation keeps the VM's NVRAM as the guest left it.
	os.WriteFile(vars+".probe", nil, 0o644)
	st1, _ := os.Stat(vars)
	if _, err := PrepareVars(vars, false); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(vars)
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("PrepareVars replaced an existing variable store")
	}
}

func readTable(t *testing.T, img string) *partition.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := partition.Read(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// bootToPowerOff runs the profile's VM until it powers off and returns what
// it printed.
func bootToPowerOff(t *testing.T, f Facts, o Options, kvmOK bool, why, sock string, uefi UEFIFiles) string {
	t.Helper()
	p, err := NewProfile(f, o, kvmOK, why)
	if err != nil {
		t.Fatal(err)
	}
	args, err := QEMUArgs(p, Disk{Socket: sock}, uefi, []string{"-no-reboot"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testutil.RequireTool(t, QEMUBinary), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(120 * time.Second)
	for {
		select {
		case <-done:
			return out.String()
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatalf("no power-off within 120 s; console:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
			// QEMU stops, without exiting, on a KVM emulation failure.
			if strings.Contains(out.String(), "KVM internal error") {
				cmd.Process.Kill()
				<-done
				return out.String()
			}
		}
	}
}
