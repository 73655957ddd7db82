package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// UEFIMarker is what the EFI test disk's boot loader prints on the serial
// console.
const UEFIMarker = "KVMIFY-UEFI-BOOT-OK"

// EFIDisk builds a 48 MiB GPT disk whose EFI System Partition holds a
// standalone GRUB (Debian's grub-efi-amd64-bin) as \EFI\BOOT\BOOTX64.EFI
// that prints UEFIMarker on COM1 and powers off.
func EFIDisk(t testing.TB) string {
	t.Helper()
	mkstandalone := RequireTool(t, "grub-mkstandalone")
	mkfs := RequireTool(t, "mkfs.vfat")
	mmd := RequireTool(t, "mmd")
	mcopy := RequireTool(t, "mcopy")
	sfdisk := RequireTool(t, "sfdisk")
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi"); err != nil {
		if InCI() {
			t.Fatal("GRUB's x86_64-efi modules are missing (grub-efi-amd64-bin)")
		}
		t.Skip("GRUB's x86_64-efi modules are missing (grub-efi-amd64-bin)")
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	cfg := filepath.Join(dir, "grub.cfg")
	os.WriteFile(cfg, []byte("serial --unit=0 --speed=115200\nterminal_output serial\necho "+UEFIMarker+"\nhalt\n"), 0o644)
	efi := filepath.Join(dir, "BOOTX64.EFI")
	run(mkstandalone, "-O", "x86_64-efi", "-o", efi, "--locales=", "--fonts=", "--themes=",
		"--install-modules=normal echo serial terminal halt configfile", "boot/grub/grub.cfg="+cfg)
	esp := filepath.Join(dir, "esp.img")
	run(mkfs, "-C", esp, "32768")
	run(mmd, "-i", esp, "::/EFI", "::/EFI/BOOT")
	run(mcopy, "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI")

	img := filepath.Join(dir, "efi.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 48<<20); err != nil {
		t.Fatal(err)
	}
	layout := "label: gpt\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
	cmd := exec.Command(sfdisk, "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(layout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	run("dd", "if="+esp, "of="+img, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	return img
}
