package launch

import (
	"fmt"

	"github.com/kvmify/kvmify/partition"
)

// Firmware is the boot firmware a guest needs.
type Firmware string

const (
	// BIOS is legacy PC firmware (SeaBIOS): boots an MBR disk's boot code.
	BIOS Firmware = "bios"
	// UEFI is OVMF: boots \EFI\BOOT\BOOTX64.EFI or the NVRAM's entry from an
	// EFI System Partition.
	UEFI Firmware = "uefi"
)

// guidESP is the GPT partition type of an EFI System Partition (UEFI
// specification, 5.3.3).
// (A test pins that the text parses.)
var guidESP, _ = partition.ParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")

// mbrTypeESP is the MBR system ID of an EFI System Partition.
const mbrTypeESP = 0xef

// BootMode is what the partition table says about how the disk boots.
type BootMode struct {
	Scheme   string   `json:"partition_table"` // mbr, gpt or none
	ESP      int      `json:"esp_partition"`   // index of the EFI System Partition, 0 if none
	Firmware Firmware `json:"firmware"`
	Reason   string   `json:"reason"`
}

// DetectBootMode decides the firmware an install on tab needs. Windows boots
// a GPT disk only through UEFI and an MBR disk through BIOS unless the
// MBR disk carries an EFI System Partition and no active partition (a
// UEFI install on MBR, which Windows setup does not make but other tools do).
func DetectBootMode(tab *partition.Table) BootMode {
	m := BootMode{Scheme: tab.Scheme.String()}
	var active int
	for _, p := range tab.Partitions {
		if m.ESP == 0 && (p.TypeGUID == guidESP || p.MBRType == mbrTypeESP) {
			m.ESP = p.Index
		}
		if active == 0 && p.Bootable && p.MBRType != 0 {
			active = p.Index
		}
	}
	switch {
	case tab.Scheme == partition.SchemeGPT && m.ESP != 0:
		m.Firmware = UEFI
		m.Reason = fmt.Sprintf("GPT disk with an EFI System Partition (partition %d)", m.ESP)
	case tab.Scheme == partition.SchemeGPT:
		m.Firmware = UEFI
		m.Reason = "GPT disk (BIOS cannot boot Windows from GPT), but no EFI System Partition was found: the boot manager may be missing"
	case tab.Scheme == partition.SchemeMBR && active != 0:
		m.Firmware = BIOS
		m.Reason = fmt.Sprintf("MBR disk with active partition %d", active)
	case tab.Scheme == partition.SchemeMBR && m.ESP != 0:
		m.Firmware = UEFI
		m.Reason = fmt.Sprintf("MBR disk with no active partition and an EFI System Partition (partition %d)", m.ESP)
	case tab.Scheme == partition.SchemeMBR:
		m.Firmware = BIOS
		m.Reason = "MBR disk with no active partition: the MBR boot code will find nothing to boot"
	default:
		m.Firmware = BIOS
		m.Reason = "no partition table: a bare file system boots only through its own boot sector"
	}
	return m
}
