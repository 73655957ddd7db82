// Package demodisk synthesises the SYSTEM hive of the demo disk: an
// XP-style install that, like a physical machine with a non-Intel IDE
// controller, boot-starts no driver for QEMU's PIIX3 IDE controller. It is
// made by kvmify's own registry engine, so the demo needs no external data.
package demodisk

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/kvmify/kvmify/registry"
)

// slack is how far the hive file extends past its hive bins, as real XP
// hives do (the corpus XP hive has ~180 KiB): edits can then add bins
// without growing the file.
const slack = 128 << 10

// Class GUIDs of the device classes the hive names.
const (
	classHDC       = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"
	classDiskDrive = "{4D36E967-E325-11CE-BFC1-08002BE10318}"
)

type value struct {
	name string
	typ  registry.ValueType
	data []byte
}

func sz(name, s string) value  { return value{name, registry.RegSZ, utf16z(s)} }
func esz(name, s string) value { return value{name, registry.RegExpandSZ, utf16z(s)} }
func dword(name string, n uint32) value {
	return value{name, registry.RegDword, binary.LittleEndian.AppendUint32(nil, n)}
}

func utf16z(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s + "\x00")) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// controlSet lists the keys of one XP control set: the IDE channels and the
// disk are known, and so is Virtual PC's PIIX4 controller, but QEMU's PIIX3
// (8086:7010) and the generic IDE class (cc_0101) are not, and PCIIde is
// disabled.
func controlSet() map[string][]value {
	cddb := `Control\CriticalDeviceDatabase\`
	svc := func(group, image string, start, tag uint32) []value {
		return []value{dword("Start", start), dword("Type", 1), dword("ErrorControl", 1),
			sz("Group", group), esz("ImagePath", image), dword("Tag", tag)}
	}
	return map[string][]value{
		cddb + `primary_ide_channel`:   {sz("Service", "atapi"), sz("ClassGUID", classHDC)},
		cddb + `secondary_ide_channel`: {sz("Service", "atapi"), sz("ClassGUID", classHDC)},
		cddb + `*pnp0600`:              {sz("Service", "atapi"), sz("ClassGUID", classHDC)},
		cddb + `gendisk`:               {sz("Service", "disk"), sz("ClassGUID", classDiskDrive)},
		cddb + `pci#ven_8086&dev_7111`: {sz("Service", "intelide"), sz("ClassGUID", classHDC)},
		`Control\Session Manager\Environment`: {sz("PROCESSOR_ARCHITECTURE", "x86"),
			esz("ComSpec", `%SystemRoot%\system32\cmd.exe`)},
		`Control\ProductOptions`: {sz("ProductType", "WinNT")},
		`Control\Windows`:        {dword("CSDVersion", 0x300)},
		`Services\atapi`:         svc("SCSI miniport", `system32\DRIVERS\atapi.sys`, 0, 0x19),
		`Services\IntelIde`:      svc("System Bus Extender", `system32\DRIVERS\intelide.sys`, 0, 4),
		`Services\PCIIde`:        svc("System Bus Extender", `system32\DRIVERS\pciide.sys`, 4, 3),
		`Services\disk`:          svc("SCSI Class", `system32\DRIVERS\disk.sys`, 0, 0),
	}
}

// SystemHive returns the demo SYSTEM hive file, stamped with t.
func SystemHive(t time.Time) ([]byte, error) {
	h, err := registry.New(registry.NewOptions{MinorVersion: 3, RootName: "$$$PROTO.HIV",
		FileName: `\SystemRoot\System32\Config\SYSTEM`, Time: t})
	if err != nil {
		return nil, err
	}
	ed, err := registry.NewEditor(h)
	if err != nil {
		return nil, err
	}
	ed.Now = func() time.Time { return t }
	keys := map[string][]value{
		`Select`: {dword("Current", 1), dword("Default", 1), dword("Failed", 0), dword("LastKnownGood", 2)},
		`Setup`:  {sz("SystemPartition", `\Device\HarddiskVolume1`)},
	}
	for _, cs := range []string{"ControlSet001", "ControlSet002"} {
		for k, vs := range controlSet() {
			keys[cs+`\`+k] = vs
		}
	}
	for path, vs := range keys {
		if err := ed.CreateKey(path); err != nil {
			return nil, fmt.Errorf("creating %s: %w", path, err)
		}
		for _, v := range vs {
			if err := ed.SetValue(path, v.name, v.typ, v.data); err != nil {
				return nil, fmt.Errorf("setting %s\\%s: %w", path, v.name, err)
			}
		}
	}
	res, err := ed.Save()
	if err != nil {
		return nil, err
	}
	return append(res.Data, make([]byte, slack)...), nil
}
