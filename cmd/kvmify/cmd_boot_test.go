package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmify/kvmify/internal/testutil"
	"github.com/kvmify/kvmify/launch"
)

// bootEnv keeps default overlays in the test's own state directory.
func bootEnv(t *testing.T) []string {
	return append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
}

// win10Disk is an MBR/NTFS test disk holding the Windows 10 corpus hive (and
// its logs) and every driver file the ide, ahci and nvme chains name.
func win10Disk(t *testing.T) string {
	tree := testutil.WindowsTree(t, "win10-1709-x64.SYSTEM", []string{".LOG1", ".LOG2"},
		"atapi.sys", "ataport.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "storahci.sys",
		"stornvme.sys", "storport.sys", "disk.sys", "classpnp.sys")
	return testutil.MkDisk(t, tree, 48)
}

// hexLine is how qemu-io's "read -v" prints the first 16 bytes of b.
func hexLine(b []byte) string {
	var s strings.Builder
	s.WriteString("00000000:  ")
	for i, c := range b[:16] {
		if i > 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}

// TestBootAttachesThePatchedController boots a Windows 10 disk patched for
// each controller, paused, and asks QEMU's monitor what the guest has: the
// controller the fix was made for, not the others, and a disk that reads
// kvmify's export. Quitting QEMU ends kvmify with QEMU's status, the overlay
// flushed and the source unchanged.
func TestBootAttachesThePatchedController(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	testutil.RequireTool(t, launch.QEMUBinary)
	img := win10Disk(t)
	before := testutil.FileSHA256(t, img)
	head := make([]byte, 16)
	f, _ := os.Open(img)
	f.ReadAt(head, 0)
	f.Close()
	ids := map[string]string{"ide": "8086:7010", "ahci": "8086:2922", "nvme": "1b36:0010"}
	for _, target := range []string{"ide", "ahci", "nvme"} {
		t.Run(target, func(t *testing.T) {
			dir := t.TempDir()
			qmp := filepath.Join(dir, "qmp.sock")
			ov := filepath.Join(dir, "overlay")
			cmd := exec.Command(bin, "boot", img, "--target", target, "--overlay", ov,
				"--", "-S", "-qmp", "unix:"+qmp+",server=on,wait=off")
			cmd.Env = bootEnv(t)
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			ended := false
			defer func() {
				if !ended {
					cmd.Process.Kill()
					<-done
				}
			}()
			for i := 0; i < 300; i++ {
				if _, err := os.Stat(qmp); err == nil {
					break
				}
				select {
				case err := <-done:
					ended = true
					t.Fatalf("kvmify boot ended early: %v\n%s", err, out.String())
				case <-time.After(100 * time.Millisecond):
				}
			}
			q := testutil.DialQMP(t, qmp, 10*time.Second)
			pci := strings.Join(q.PCIIDs(t), " ")
			for tg, id := range ids {
				has := strings.Contains(pci, id)
				if tg == target && !has {
					t.Errorf("guest lacks the %s controller %s: %s", tg, id, pci)
				}
				if tg != target && has && !(target == "nvme" && tg == "ahci") {
					t.Errorf("guest booted for %s also has the %s controller %s: %s", target, tg, id, pci)
				}
			}
			n := len(out.String())
			q.HMP(t, fmt.Sprintf("qemu-io %s \"read -v 0 16\"", launch.DiskID))
			want := hexLine(head)
			for i := 0; i < 100 && !strings.Contains(out.String()[n:], want); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(out.String()[n:], want) {
				t.Errorf("guest disk does not read the export's first bytes %q; QEMU printed %q", want, out.String()[n:])
			}
			q.Exec("quit", nil, nil)
			select {
			case err := <-done:
				ended = true
				if err != nil {
					t.Fatalf("kvmify boot after QEMU quit: %v\n%s", err, out.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("kvmify boot did not end after QEMU quit\n%s", out.String())
			}
			if !strings.Contains(out.String(), "flushed") {
				t.Errorf("no word of the overlay being flushed:\n%s", out.String())
			}
			if !strings.Contains(out.String(), "applied the "+target+" boot fix") {
				t.Errorf("no %s fix applied:\n%s", target, out.String())
			}
			info, err := exec.Command(bin, "overlay", "info", ov, "--json").Output()
			if err != nil || !bytes.Contains(info, []byte(`"kvmify.patch"`)) {
				t.Errorf("overlay holds no patch record: %v\n%.300s", err, info)
			}
		})
	}
	if after := testutil.FileSHA256(t, img); after != before {
		t.Fatal("the source image changed")
	}
}

// TestBootMarkerDisk boots the BIOS marker disk to its serial marker; the
// disk's boot code powers off, so kvmify ends with QEMU's status 0. A QEMU
// that refuses its arguments ends kvmify with QEMU's failure status.
func TestBootMarkerDisk(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	testutil.RequireTool(t, launch.QEMUBinary)
	tree := testutil.WindowsTree(t, "xp-sp3-x86.SYSTEM", nil, "atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys", "disk.sys", "classpnp.sys")
	img := testutil.MkDisk(t, tree, 32)
	before := testutil.FileSHA256(t, img)
	cmd := exec.Command(bin, "boot", img, "--overlay", filepath.Join(t.TempDir(), "ov"))
	cmd.Env = bootEnv(t)
	out, err := runWithTimeout(cmd, 90*time.Second)
	if err != nil || !strings.Contains(out, "KVMIFY-BOOT-OK") {
		t.Fatalf("boot: %v\n%s", err, out)
	}
	if !strings.Contains(out, "-machine pc,") {
		t.Errorf("XP's default ide fix not booted on i440fx:\n%s", out)
	}
	cmd = exec.Command(bin, "boot", img, "--ephemeral", "--", "-no-such-qemu-option")
	cmd.Env = bootEnv(t)
	out, err = runWithTimeout(cmd, 60*time.Second)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(out, "QEMU exited with status 1") {
		t.Fatalf("a failing QEMU: %v\n%s", err, out)
	}
	if after := testutil.FileSHA256(t, img); after != before {
		t.Fatal("the source image changed")
	}
}

func runWithTimeout(cmd *exec.Cmd, d time.Duration) (string, error) {
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("timed out after %v", d)
	}
}

// TestBootUEFIDisk boots a GPT disk with an EFI System Partition: kvmify
// picks OVMF, keeps the VM's variable store beside the overlay, and the
// disk's EFI loader prints its marker.
func TestBootUEFIDisk(t *testing.T) {
	if _, _, err := launch.FindOVMF(); err != nil {
		if testutil.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	bin := testutil.BuildKvmify(t)
	img := testutil.EFIDisk(t)
	ov := filepath.Join(t.TempDir(), "efi.overlay")
	boot := func(extra ...string) (string, error) {
		args := append([]string{"boot", img, "--overlay", ov}, extra...)
		cmd := exec.Command(bin, append(args, "--", "-no-reboot")...)
		cmd.Env = bootEnv(t)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			return "", err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		deadline := time.After(150 * time.Second)
		for {
			select {
			case err := <-done:
				return out.String(), err
			case <-deadline:
				cmd.Process.Kill()
				<-done
				return out.String(), fmt.Errorf("timed out")
			case <-time.After(100 * time.Millisecond):
				if strings.Contains(out.String(), "KVM internal error") {
					// QEMU stops, without exiting, on a KVM emulation
					// failure; kvmify passes the interrupt on.
					cmd.Process.Signal(os.Interrupt)
					<-done
					return out.String(), nil
				}
			}
		}
	}
	out, err := boot()
	if strings.Contains(out, "KVM internal error") {
		// This project's CI machine's nested KVM cannot run OVMF (an x87
		// instruction in its early code); TCG runs the same firmware.
		t.Logf("KVM cannot run OVMF on this host; booting under TCG")
		out, err = boot("--accel", "tcg")
	}
	if err != nil || !strings.Contains(out, testutil.UEFIMarker) {
		t.Fatalf("UEFI boot: %v\n%s", err, out)
	}
	if !strings.Contains(out, "uefi firmware") || !strings.Contains(out, "if=pflash") {
		t.Errorf("UEFI not chosen:\n%s", out)
	}
	if _, err := os.Stat(launch.VarsPath(ov)); err != nil {
		t.Errorf("no UEFI variable store beside the overlay: %v", err)
	}
}

// TestBootDryRunAndLibvirt checks that --dry-run and --libvirt change
// nothing, that the printed line runs under sh -c against 'kvmify serve'
// with the same flags, and that every --libvirt domain validates.
func TestBootDryRunAndLibvirt(t *testing.T) {
	bin := testutil.BuildKvmify(t)
	testutil.RequireTool(t, launch.QEMUBinary)
	img := win10Disk(t)
	env := bootEnv(t)
	stateDir := strings.TrimPrefix(env[len(env)-2], "XDG_STATE_HOME=")
	dir := t.TempDir()
	sock := filepath.Join(dir, "serve,1.sock") // a comma QEMU must see escaped

	for _, target := range []string{"ide", "ahci", "nvme"} {
		cmd := exec.Command(bin, "boot", img, "--target", target, "--libvirt", "--unix", sock)
		cmd.Env = env
		xml, err := cmd.Output()
		if err != nil {
			t.Fatalf("--libvirt %s: %v", target, err)
		}
		if v, err := exec.LookPath("virt-xml-validate"); err == nil || testutil.InCI() {
			p := filepath.Join(dir, target+".xml")
			os.WriteFile(p, xml, 0o644)
			if out, err := exec.Command(v, p, "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate rejects the %s domain: %v\n%s\n%s", target, err, out, xml)
			}
		}
	}
	cmd := exec.Command(bin, "boot", img, "--target", "ahci", "--dry-run", "--json", "--unix", sock)
	cmd.Env = env
	js, err := cmd.Output()
	var dry struct {
		Command string `json:"command"`
		Profile struct {
			Machine string
		} `json:"profile"`
	}
	if err != nil || json.Unmarshal(js, &dry) != nil || dry.Profile.Machine != "q35" || !strings.Contains(dry.Command, "serve,,1.sock") {
		t.Fatalf("--dry-run --json: %v\n%s", err, js)
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) != 0 {
		t.Fatalf("--dry-run/--libvirt created %v in the state directory", entries)
	}

	qmp := filepath.Join(dir, "qmp.sock")
	cmd = exec.Command(bin, "boot", img, "--target", "ahci", "--dry-run", "--unix", sock, "--",
		"-S", "-qmp", "unix:"+qmp+",server=on,wait=off")
	cmd.Env = env
	line, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "serve", img, "--target", "ahci", "--unix", sock)
	srv.Env = env
	var srvOut lockedBuffer
	srv.Stderr = &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	for i := 0; i < 300 && !strings.Contains(srvOut.String(), "press Ctrl-C"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(srvOut.String(), strings.TrimSpace(strings.SplitN(string(line), " -S ", 2)[0])) {
		t.Errorf("serve does not print the line boot --dry-run prints:\nserve: %s\nboot:  %s", srvOut.String(), line)
	}
	vm := exec.Command("sh", "-c", "exec "+strings.TrimSpace(string(line)))
	var vmOut lockedBuffer
	vm.Stdout, vm.Stderr = &vmOut, &vmOut
	vm.WaitDelay = 5 * time.Second
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { vm.Process.Kill(); vm.Wait() }()
	for i := 0; i < 300; i++ {
		if _, err := os.Stat(qmp); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	q := testutil.DialQMP(t, qmp, 10*time.Second)
	if pci := strings.Join(q.PCIIDs(t), " "); !strings.Contains(pci, "8086:2922") {
		t.Errorf("the dry-run line's guest lacks ICH9 AHCI: %s\n%s", pci, vmOut.String())
	}
	q.Exec("quit", nil, nil)
}
