// Package launch turns what kvmify knows about a disk (the controller its
// boot fix was made for, the Windows version, the firmware the install
// needs) into a QEMU command line and a libvirt domain for the same VM.
//
// A launch profile is pure data: NewProfile decides machine, controller,
// firmware, accelerator, memory, CPUs, clock and devices, and says why for
// each choice; QEMUArgs and LibvirtXML render it. Nothing here starts a
// process or writes a file except PrepareVars, which makes the per-VM copy
// of the UEFI variable store.
//
// The controller is the point of the whole exercise: Windows boots only
// from a controller whose driver it boot-starts, so the disk is attached to
// exactly the one the fix was made for — PIIX3 IDE (8086:7010) on the i440fx
// "pc" machine for ide, ICH9 AHCI (8086:2922) on "q35" for ahci, QEMU's NVMe
// controller (1b36:0010) for nvme.
package launch
