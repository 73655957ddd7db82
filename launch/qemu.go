package launch

import (
	"errors"
	"fmt"
	"strings"
)

// QEMUBinary is the system emulator kvmify starts.
const QEMUBinary = "qemu-system-x86_64"

// Node and device names kvmify gives its objects in the QEMU command line,
// so QMP users and tests can find them.
const (
	DiskID = "kvmify-disk"
	TLSID  = "kvmify-tls"
	// NVMeSerial is the serial number of the emulated NVMe controller
	// (QEMU requires one).
	NVMeSerial = "KVMIFY0001"
)

// Disk says where the guest's disk is served.
type Disk struct {
	// Socket is an NBD server's unix socket; Host and Port a TCP one.
	Socket     string
	Host, Port string
	// Export is the NBD export name ("" for the default export).
	Export string
	// TLSDir holds x509 client credentials (ca-cert.pem …) for NBD over TLS.
	TLSDir string
}

// UEFIFiles are the OVMF images a UEFI guest boots with.
type UEFIFiles struct {
	Code string // read-only firmware code
	Vars string // this VM's own variable store (NVRAM), written by the guest
}

// QEMUArgs renders p as the argument vector of qemu-system-x86_64 (without
// the program name), attaching d to exactly the profile's controller. extra
// is appended as given.
func QEMUArgs(p Profile, d Disk, uefi UEFIFiles, extra []string) ([]string, error) {
	if d.Socket == "" && d.Host == "" {
		return nil, errors.New("no NBD server given for the disk")
	}
	a := []string{
		"-name", "kvmify",
		"-machine", p.Machine + ",accel=" + p.Accel,
		"-cpu", p.CPUModel,
		"-smp", fmt.Sprint(p.CPUs),
		"-m", fmt.Sprintf("%dM", p.MemoryMiB),
		"-rtc", "base=" + p.RTCBase,
	}
	if p.Firmware == UEFI {
		if uefi.Code == "" || uefi.Vars == "" {
			return nil, errors.New("UEFI guest without OVMF code and variable store files")
		}
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+Escape(uefi.Code),
			"-drive", "if=pflash,format=raw,unit=1,file="+Escape(uefi.Vars))
	}
	if d.TLSDir != "" {
		a = append(a, "-object", "tls-creds-x509,id="+TLSID+",endpoint=client,dir="+Escape(d.TLSDir))
	}
	a = append(a, "-drive", driveSpec(p, d))
	switch p.Controller {
	case IDE, AHCI:
		// Both machines name their first built-in IDE/AHCI port ide.0.
		a = append(a, "-device", "ide-hd,drive="+DiskID+",bus=ide.0,bootindex=0")
	case NVMe:
		a = append(a, "-device", "nvme,drive="+DiskID+",serial="+NVMeSerial+",bootindex=0")
	}
	a = append(a, "-usb", "-device", "usb-tablet")
	if p.NIC != "" {
		a = append(a, "-nic", "user,model="+p.NIC)
	} else {
		a = append(a, "-nic", "none")
	}
	if p.Display == "none" {
		a = append(a, "-display", "none", "-serial", "stdio")
	} else {
		a = append(a, "-display", p.Display)
	}
	return append(a, extra...), nil
}

// driveSpec is the -drive option for the NBD disk, in the dotted form QEMU
// 7.2 accepts for TLS too (it rejects nbds:// URIs in file=).
func driveSpec(p Profile, d Disk) string {
	kv := []string{"if=none", "id=" + DiskID, "format=raw", "cache=none", "file.driver=nbd"}
	if d.Socket != "" {
		kv = append(kv, "file.server.type=unix", "file.server.path="+Escape(d.Socket))
	} else {
		kv = append(kv, "file.server.type=inet", "file.server.host="+Escape(d.Host), "file.server.port="+Escape(d.Port))
	}
	if d.Export != "" {
		kv = append(kv, "file.export="+Escape(d.Export))
	}
	if d.TLSDir != "" {
		kv = append(kv, "file.tls-creds="+TLSID)
	}
	if p.ReadOnly {
		kv = append(kv, "snapshot=on")
	}
	return strings.Join(kv, ",")
}

// Escape doubles commas, which QEMU's option parser reads as separators.
func Escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// ShellQuote renders argv as one line sh -c runs as the same argv.
func ShellQuote(argv []string) string {
	var b strings.Builder
	for i, s := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(s))
	}
	return b.String()
}

func quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./=:,@%+", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
