package bootfix

import (
	"fmt"
	"strings"
)

// Target is a QEMU storage controller the boot disk can sit on.
type Target string

// The controllers kvmify models.
const (
	TargetIDE    Target = "ide"    // i440fx machine: PIIX3 IDE
	TargetAHCI   Target = "ahci"   // q35 machine: ICH9 AHCI
	TargetNVMe   Target = "nvme"   // QEMU's NVMe controller
	TargetVirtio Target = "virtio" // virtio-blk (legacy PCI ID)
)

// Targets lists every modelled target in display order.
var Targets = []Target{TargetIDE, TargetAHCI, TargetNVMe, TargetVirtio}

// ParseTarget checks a target name given by a user. virtio is refused: it
// stays in Targets so that inspect shows its (always 0x7B) prediction, but
// no Windows has an inbox virtio-blk driver, so no registry fix can boot
// it, and kvmify does not inject drivers.
func ParseTarget(s string) (Target, error) {
	if strings.EqualFold(s, string(TargetVirtio)) {
		return "", fmt.Errorf("%w for virtio: Windows has no inbox virtio-blk driver, so no registry fix can boot it; "+
			"install viostor (virtio-win) in Windows first, or use ide, ahci or nvme", ErrUnsupported)
	}
	if t, ok := knownTarget(s); ok {
		return t, nil
	}
	return "", fmt.Errorf("%w %q (want ide, ahci or nvme)", ErrUnknownTarget, s)
}

// knownTarget finds a modelled target by name, virtio included.
func knownTarget(s string) (Target, bool) {
	for _, t := range Targets {
		if strings.EqualFold(s, string(t)) {
			return t, true
		}
	}
	return "", false
}

// PCIDevice is the identity a PCI function reports in its configuration
// space, from which Windows derives the device's IDs.
type PCIDevice struct {
	Vendor, Device          uint16
	SubsysVendor, SubsysID  uint16
	Revision                uint8
	Class, SubClass, ProgIF uint8
	Name                    string
}

// QEMU's controllers as the guest sees them (values from QEMU's hw/ide and
// hw/block device models: PCI IDs, revision, class code, and the
// 1af4:1100 subsystem QEMU sets on emulated devices).
var (
	PIIX3IDE = PCIDevice{Vendor: 0x8086, Device: 0x7010, SubsysVendor: 0x1af4, SubsysID: 0x1100,
		Revision: 0x00, Class: 0x01, SubClass: 0x01, ProgIF: 0x80, Name: "PIIX3 IDE (i440fx)"}
	ICH9AHCI = PCIDevice{Vendor: 0x8086, Device: 0x2922, SubsysVendor: 0x1af4, SubsysID: 0x1100,
		Revision: 0x02, Class: 0x01, SubClass: 0x06, ProgIF: 0x01, Name: "ICH9 AHCI (q35)"}
	// QEMU's hw/nvme: Red Hat's 1b36:0010, revision 2, class 01 08 02
	// (NVM Express), default subsystem.
	QEMUNVMe = PCIDevice{Vendor: 0x1b36, Device: 0x0010, SubsysVendor: 0x1af4, SubsysID: 0x1100,
		Revision: 0x02, Class: 0x01, SubClass: 0x08, ProgIF: 0x02, Name: "NVMe (QEMU)"}
	VirtioBlk = PCIDevice{Vendor: 0x1af4, Device: 0x1001, SubsysVendor: 0x1af4, SubsysID: 0x0002,
		Revision: 0x00, Class: 0x01, SubClass: 0x00, ProgIF: 0x00, Name: "virtio-blk (legacy)"}
)

// Controller returns the PCI device QEMU presents for a target.
func (t Target) Controller() PCIDevice {
	switch t {
	case TargetAHCI:
		return ICH9AHCI
	case TargetNVMe:
		return QEMUNVMe
	case TargetVirtio:
		return VirtioBlk
	}
	return PIIX3IDE
}

// HardwareIDs returns the device's hardware IDs, most specific first, in
// the form the Windows PCI bus driver reports them.
func (d PCIDevice) HardwareIDs() []string {
	vd := fmt.Sprintf(`PCI\VEN_%04X&DEV_%04X`, d.Vendor, d.Device)
	sub := fmt.Sprintf("&SUBSYS_%04X%04X", d.SubsysID, d.SubsysVendor)
	return []string{
		vd + sub + fmt.Sprintf("&REV_%02X", d.Revision),
		vd + sub,
		vd + "&CC_" + d.classCode(true),
		vd + "&CC_" + d.classCode(false),
	}
}

// CompatibleIDs returns the device's compatible IDs, most specific first.
func (d PCIDevice) CompatibleIDs() []string {
	vd := fmt.Sprintf(`PCI\VEN_%04X&DEV_%04X`, d.Vendor, d.Device)
	v := fmt.Sprintf(`PCI\VEN_%04X`, d.Vendor)
	return []string{
		vd + fmt.Sprintf("&REV_%02X", d.Revision),
		vd,
		v + "&CC_" + d.classCode(true),
		v + "&CC_" + d.classCode(false),
		v,
		`PCI\CC_` + d.classCode(true),
		`PCI\CC_` + d.classCode(false),
	}
}

// IDs is HardwareIDs followed by CompatibleIDs: the order Windows tries them.
func (d PCIDevice) IDs() []string {
	return append(d.HardwareIDs(), d.CompatibleIDs()...)
}

func (d PCIDevice) classCode(withProgIF bool) string {
	if withProgIF {
		return fmt.Sprintf("%02X%02X%02X", d.Class, d.SubClass, d.ProgIF)
	}
	return fmt.Sprintf("%02X%02X", d.Class, d.SubClass)
}

// device is one device node in the chain from the controller to the disk,
// with the IDs Windows matches for it.
type device struct {
	what string   // for reasons: "controller", "IDE channel", "disk"
	ids  []string // hardware IDs, then compatible IDs
}

// Child device IDs. The IDE channel's IDs are those pciidex reports for the
// primary channel (XP: Primary_IDE_Channel with *PNP0600; Vista+ also
// Internal_IDE_Channel); the disk's only generic ID is GenDisk, its other
// IDs name the drive model, which no driver matches.
var (
	ideChannelIDs = []string{"Primary_IDE_Channel", "Internal_IDE_Channel", "*PNP0600"}
	diskIDs       = []string{"GenDisk"}
)

// chain lists the devices that need a boot-start driver for the target.
func (t Target) chain() []device {
	ctl := t.Controller()
	devs := []device{{what: "controller " + ctl.Name, ids: ctl.IDs()}}
	if t == TargetIDE {
		devs = append(devs, device{what: "IDE channel", ids: ideChannelIDs})
	}
	return append(devs, device{what: "disk", ids: diskIDs})
}

// inboxControllerServices names the inbox services that drive the target's
// controller on a Windows family: what a CriticalDeviceDatabase entry for
// it should map to.
func inboxControllerServices(t Target, fam Family) []string {
	switch {
	case t == TargetIDE:
		return []string{"intelide", "pciide"}
	case t == TargetAHCI && fam == FamilyNT60:
		return []string{"msahci"}
	case t == TargetAHCI && fam == FamilyNT62:
		return []string{"storahci"}
	case t == TargetNVMe:
		return []string{"stornvme"}
	}
	return nil
}
