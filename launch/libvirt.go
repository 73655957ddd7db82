package launch

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// The libvirt domain elements kvmify writes (a subset of libvirt's
// domaincommon schema).
type (
	lvDomain struct {
		XMLName  xml.Name   `xml:"domain"`
		Type     string     `xml:"type,attr"`
		QemuNS   string     `xml:"xmlns:qemu,attr,omitempty"`
		Name     string     `xml:"name"`
		Memory   lvMemory   `xml:"memory"`
		VCPU     int        `xml:"vcpu"`
		OS       lvOS       `xml:"os"`
		Features lvFeatures `xml:"features"`
		CPU      *lvCPU     `xml:"cpu,omitempty"`
		Clock    lvClock    `xml:"clock"`
		Devices  lvDevices  `xml:"devices"`
		Cmdline  *lvCmdline `xml:"qemu:commandline,omitempty"`
	}
	lvMemory struct {
		Unit  string `xml:"unit,attr"`
		Value int    `xml:",chardata"`
	}
	lvOS struct {
		Type   lvOSType  `xml:"type"`
		Loader *lvLoader `xml:"loader,omitempty"`
		NVRAM  string    `xml:"nvram,omitempty"`
		Boot   *lvBoot   `xml:"boot,omitempty"`
	}
	lvOSType struct {
		Arch    string `xml:"arch,attr"`
		Machine string `xml:"machine,attr"`
		Value   string `xml:",chardata"`
	}
	lvLoader struct {
		ReadOnly string `xml:"readonly,attr"`
		Type     string `xml:"type,attr"`
		Path     string `xml:",chardata"`
	}
	lvBoot struct {
		Dev string `xml:"dev,attr"`
	}
	lvFeatures struct {
		ACPI struct{} `xml:"acpi"`
		APIC struct{} `xml:"apic"`
	}
	lvCPU struct {
		Mode string `xml:"mode,attr"`
	}
	lvClock struct {
		Offset string `xml:"offset,attr"`
	}
	lvDevices struct {
		Emulator  string       `xml:"emulator"`
		Disks     []lvDisk     `xml:"disk"`
		Inputs    []lvInput    `xml:"input"`
		Interface *lvInterface `xml:"interface,omitempty"`
		Serial    lvChar       `xml:"serial"`
		Console   lvChar       `xml:"console"`
		Graphics  *lvGraphics  `xml:"graphics,omitempty"`
	}
	lvDisk struct {
		Type      string    `xml:"type,attr"`
		Device    string    `xml:"device,attr"`
		Driver    lvDriver  `xml:"driver"`
		Source    lvSource  `xml:"source"`
		Target    lvTarget  `xml:"target"`
		Transient *struct{} `xml:"transient,omitempty"`
	}
	lvDriver struct {
		Name  string `xml:"name,attr"`
		Type  string `xml:"type,attr"`
		Cache string `xml:"cache,attr"`
	}
	lvSource struct {
		Protocol string `xml:"protocol,attr"`
		Name     string `xml:"name,attr,omitempty"`
		Host     lvHost `xml:"host"`
	}
	lvHost struct {
		Transport string `xml:"transport,attr,omitempty"`
		Socket    string `xml:"socket,attr,omitempty"`
		Name      string `xml:"name,attr,omitempty"`
		Port      string `xml:"port,attr,omitempty"`
	}
	lvTarget struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	}
	lvInput struct {
		Type string `xml:"type,attr"`
		Bus  string `xml:"bus,attr"`
	}
	lvInterface struct {
		Type  string  `xml:"type,attr"`
		Model lvModel `xml:"model"`
	}
	lvModel struct {
		Type string `xml:"type,attr"`
	}
	lvChar struct {
		Type string `xml:"type,attr"`
	}
	lvGraphics struct {
		Type string `xml:"type,attr"`
	}
	lvCmdline struct {
		Args []lvArg `xml:"qemu:arg"`
	}
	lvArg struct {
		Value string `xml:"value,attr"`
	}
)

// LibvirtXML renders p as a libvirt domain named name whose disk is the NBD
// export d (kvmify serve being the disk's server). libvirt 9 has no NVMe
// disk bus, so an NVMe profile passes its drive and controller to QEMU
// through the qemu:commandline extension instead of a <disk>.
func LibvirtXML(name string, p Profile, d Disk, uefi UEFIFiles) ([]byte, error) {
	if d.TLSDir != "" {
		return nil, errors.New("--libvirt with TLS: configure the nbd TLS credentials in libvirt's qemu.conf (nbd_tls) instead")
	}
	dom := lvDomain{
		Type:   p.Accel,
		Name:   name,
		Memory: lvMemory{Unit: "MiB", Value: p.MemoryMiB},
		VCPU:   p.CPUs,
		OS: lvOS{
			Type: lvOSType{Arch: "x86_64", Machine: p.Machine, Value: "hvm"},
		},
		Clock: lvClock{Offset: p.RTCBase},
		Devices: lvDevices{
			Emulator: "/usr/bin/" + QEMUBinary,
			Inputs:   []lvInput{{Type: "tablet", Bus: "usb"}},
			Serial:   lvChar{Type: "pty"},
			Console:  lvChar{Type: "pty"},
		},
	}
	if dom.Type == "tcg" {
		dom.Type = "qemu"
	}
	if p.Accel == "kvm" {
		dom.CPU = &lvCPU{Mode: "host-passthrough"}
	}
	if p.Firmware == UEFI {
		if uefi.Code == "" || uefi.Vars == "" {
			return nil, errors.New("UEFI guest without OVMF code and variable store files")
		}
		dom.OS.Loader = &lvLoader{ReadOnly: "yes", Type: "pflash", Path: uefi.Code}
		dom.OS.NVRAM = uefi.Vars
	}
	if p.Display != "none" {
		dom.Devices.Graphics = &lvGraphics{Type: "vnc"}
	}
	if p.NIC != "" {
		dom.Devices.Interface = &lvInterface{Type: "user", Model: lvModel{Type: p.NIC}}
	}
	switch p.Controller {
	case IDE, AHCI:
		dom.OS.Boot = &lvBoot{Dev: "hd"}
		disk := lvDisk{Type: "network", Device: "disk",
			Driver: lvDriver{Name: "qemu", Type: "raw", Cache: "none"},
			Source: lvSource{Protocol: "nbd", Name: d.Export}}
		if d.Socket != "" {
			disk.Source.Host = lvHost{Transport: "unix", Socket: d.Socket}
		} else {
			disk.Source.Host = lvHost{Name: d.Host, Port: d.Port}
		}
		if p.Controller == IDE {
			disk.Target = lvTarget{Dev: "hda", Bus: "ide"}
		} else {
			disk.Target = lvTarget{Dev: "sda", Bus: "sata"}
		}
		if p.ReadOnly {
			disk.Transient = &struct{}{}
		}
		dom.Devices.Disks = []lvDisk{disk}
	case NVMe:
		dom.QemuNS = "http://libvirt.org/schemas/domain/qemu/1.0"
		args := []string{"-drive", driveSpec(p, d),
			"-device", "nvme,drive=" + DiskID + ",serial=" + NVMeSerial + ",bootindex=0"}
		dom.Cmdline = &lvCmdline{}
		for _, a := range args {
			dom.Cmdline.Args = append(dom.Cmdline.Args, lvArg{Value: a})
		}
	default:
		return nil, fmt.Errorf("no controller chosen")
	}
	b, err := xml.MarshalIndent(dom, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DomainName makes a libvirt-safe domain name from an image's base name.
func DomainName(image string) string {
	var b strings.Builder
	b.WriteString("kvmify-")
	for _, r := range image {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
