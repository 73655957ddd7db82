package launch

import (
	"fmt"
	"os"
	"runtime"
)

// Controller is the emulated disk controller a boot fix was made for.
type Controller string

const (
	// IDE is the PIIX3 IDE controller (8086:7010) of QEMU's i440fx machine.
	IDE Controller = "ide"
	// AHCI is the ICH9 AHCI controller (8086:2922) of QEMU's q35 machine.
	AHCI Controller = "ahci"
	// NVMe is QEMU's NVMe controller (1b36:0010).
	NVMe Controller = "nvme"
)

// ParseController accepts ide, ahci or nvme.
func ParseController(s string) (Controller, error) {
	switch c := Controller(s); c {
	case IDE, AHCI, NVMe:
		return c, nil
	}
	return "", fmt.Errorf("unknown controller %q (want ide, ahci or nvme)", s)
}

// Facts are what kvmify learned from the disk.
type Facts struct {
	Controller Controller
	Firmware   Firmware
	// WindowsMajor and WindowsMinor are the NT version (5.1 for XP, 6.1 for
	// 7, 10.0 for 10 and 11); both 0 when no Windows install was found.
	WindowsMajor, WindowsMinor int
	// RTCIsUTC is set when the hive's TimeZoneInformation says the hardware
	// clock keeps UTC (RealTimeIsUniversal = 1).
	RTCIsUTC bool
}

// Options are the user's choices; zero values mean "decide from the facts".
type Options struct {
	MemoryMiB int
	CPUs      int
	// Network gives the guest a NIC with an inbox driver, on QEMU's user-mode
	// network. Off by default: a booted evidence disk should not reach out
	// (updates, time sync, domain logons change it and the world).
	Network bool
	// Display is "none" (headless: serial console on standard I/O) or a
	// QEMU -display backend (gtk, sdl, vnc=:N, spice-app…).
	Display string
	// ReadOnly keeps guest writes in a QEMU temporary file (snapshot=on), for
	// a read-only export.
	ReadOnly bool
	// Accel forces kvm or tcg; "" picks kvm when /dev/kvm can be opened.
	Accel string
}

// Profile is a fully decided VM.
type Profile struct {
	Machine    string // pc (i440fx) or q35
	Controller Controller
	Firmware   Firmware
	Accel      string // kvm or tcg
	CPUModel   string // host under KVM, max under TCG
	MemoryMiB  int
	CPUs       int
	RTCBase    string // localtime or utc
	NIC        string // QEMU NIC model; "" for none
	Display    string
	ReadOnly   bool
	// Notes say why each choice was made, for people.
	Notes []string
}

// kvmDevice is opened to learn whether KVM is usable.
const kvmDevice = "/dev/kvm"

// KVMUsable reports whether this process can use KVM, and if not, why.
func KVMUsable() (bool, string) {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return false, err.Error()
	}
	f.Close()
	return true, ""
}

// NewProfile decides the VM for f under o. kvmOK and kvmWhy are what
// KVMUsable answered (passed in so the decision stays testable both ways).
func NewProfile(f Facts, o Options, kvmOK bool, kvmWhy string) (Profile, error) {
	p := Profile{Controller: f.Controller, Firmware: f.Firmware, ReadOnly: o.ReadOnly}
	switch f.Controller {
	case IDE:
		p.Machine = "pc"
		p.Notes = append(p.Notes, "machine pc (i440fx): its PIIX3 IDE controller is the one the ide fix boot-starts")
	case AHCI:
		p.Machine = "q35"
		p.Notes = append(p.Notes, "machine q35: its ICH9 AHCI controller is the one the ahci fix boot-starts")
	case NVMe:
		p.Machine = "q35"
		p.Notes = append(p.Notes, "machine q35 with the disk on QEMU's NVMe controller, the one the nvme fix boot-starts")
	default:
		return Profile{}, fmt.Errorf("no controller chosen")
	}
	if f.Firmware != BIOS && f.Firmware != UEFI {
		return Profile{}, fmt.Errorf("unknown firmware %q", f.Firmware)
	}
	switch o.Accel {
	case "":
		if kvmOK {
			p.Accel, p.CPUModel = "kvm", "host"
		} else {
			p.Accel, p.CPUModel = "tcg", "max"
			p.Notes = append(p.Notes, "KVM is not usable ("+kvmWhy+"): emulating the CPU with TCG, which is many times slower")
		}
	case "kvm":
		if !kvmOK {
			return Profile{}, fmt.Errorf("--accel kvm: KVM is not usable (%s)", kvmWhy)
		}
		p.Accel, p.CPUModel = "kvm", "host"
	case "tcg":
		p.Accel, p.CPUModel = "tcg", "max"
	default:
		return Profile{}, fmt.Errorf("unknown accelerator %q (want kvm or tcg)", o.Accel)
	}

	nt := f.WindowsMajor*10 + f.WindowsMinor
	mem, cpus, nic := 4096, 2, "e1000e"
	switch {
	case nt == 0:
		mem, cpus, nic = 1024, 1, "e1000"
	case nt < 60: // 2000, XP, 2003
		mem, cpus, nic = 1024, 1, "rtl8139"
	case nt < 62: // Vista, 7
		mem, cpus, nic = 2048, 2, "e1000"
	}
	p.MemoryMiB, p.CPUs = mem, cpus
	if o.MemoryMiB > 0 {
		p.MemoryMiB = o.MemoryMiB
	}
	if o.CPUs > 0 {
		p.CPUs = o.CPUs
	}
	if n := runtime.NumCPU(); p.CPUs > n && o.CPUs == 0 {
		p.CPUs = n
	}
	if o.Network {
		p.NIC = nic
		p.Notes = append(p.Notes, "network: "+nic+" (an inbox driver of this Windows version) on QEMU user-mode networking")
	} else {
		p.Notes = append(p.Notes, "no network (the default, so a booted evidence disk reaches nothing; --network adds one)")
	}
	p.RTCBase = "localtime"
	if f.RTCIsUTC {
		p.RTCBase = "utc"
		p.Notes = append(p.Notes, "clock in UTC: the hive sets RealTimeIsUniversal")
	}
	p.Display = o.Display
	if p.Display == "" {
		p.Display = "none"
	}
	if p.ReadOnly {
		p.Notes = append(p.Notes, "read-only export: guest writes go to a QEMU temporary file (snapshot=on) and vanish at exit")
	}
	return p, nil
}
