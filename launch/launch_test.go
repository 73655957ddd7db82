package launch

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/partition"
)

func TestESPGUIDParses(t *testing.T) {
	if guidESP == (partition.GUID{}) {
		t.Fatal("the EFI System Partition GUID did not parse")
	}
	if got := guidESP.String(); !strings.EqualFold(got, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Fatalf("ESP GUID renders as %s", got)
	}
}

func TestDetectBootMode(t *testing.T) {
	basic := partition.GUIDBasicData
	cases := []struct {
		name string
		tab  partition.Table
		want Firmware
		esp  int
	}{
		{"mbr active ntfs", partition.Table{Scheme: partition.SchemeMBR, Partitions: []partition.Partition{
			{Index: 1, MBRType: 0x07, Bootable: true}}}, BIOS, 0},
		{"mbr no active", partition.Table{Scheme: partition.SchemeMBR, Partitions: []partition.Partition{
			{Index: 1, MBRType: 0x07}}}, BIOS, 0},
		{"mbr esp no active", partition.Table{Scheme: partition.SchemeMBR, Partitions: []partition.Partition{
			{Index: 1, MBRType: 0xef}, {Index: 2, MBRType: 0x07}}}, UEFI, 1},
		{"mbr esp and active", partition.Table{Scheme: partition.SchemeMBR, Partitions: []partition.Partition{
			{Index: 1, MBRType: 0xef}, {Index: 2, MBRType: 0x07, Bootable: true}}}, BIOS, 1},
		{"gpt esp", partition.Table{Scheme: partition.SchemeGPT, Partitions: []partition.Partition{
			{Index: 1, TypeGUID: basic}, {Index: 2, TypeGUID: guidESP}}}, UEFI, 2},
		{"gpt without esp", partition.Table{Scheme: partition.SchemeGPT, Partitions: []partition.Partition{
			{Index: 1, TypeGUID: basic}}}, UEFI, 0},
		{"bare", partition.Table{Scheme: partition.SchemeNone}, BIOS, 0},
	}
	for _, c := range cases {
		m := DetectBootMode(&c.tab)
		if m.Firmware != c.want || m.ESP != c.esp || m.Reason == "" || m.Scheme != c.tab.Scheme.String() {
			t.Errorf("%s: got %+v, want firmware %s esp %d", c.name, m, c.want, c.esp)
		}
	}
}

func TestNewProfileByVersion(t *testing.T) {
	cases := []struct {
		major, minor int
		ctl          Controller
		machine      string
		mem, cpus    int
		nic          string
	}{
		{5, 1, IDE, "pc", 1024, 1, "rtl8139"},
		{6, 1, AHCI, "q35", 2048, 2, "e1000"},
		{6, 3, AHCI, "q35", 4096, 2, "e1000e"},
		{10, 0, NVMe, "q35", 4096, 2, "e1000e"},
	}
	for _, c := range cases {
		p, err := NewProfile(Facts{Controller: c.ctl, Firmware: BIOS, WindowsMajor: c.major, WindowsMinor: c.minor},
			Options{Network: true, CPUs: c.cpus}, true, "")
		if err != nil {
			t.Fatal(err)
		}
		if p.Machine != c.machine || p.MemoryMiB != c.mem || p.CPUs != c.cpus || p.NIC != c.nic || p.Accel != "kvm" || p.CPUModel != "host" {
			t.Errorf("%d.%d %s: %+v", c.major, c.minor, c.ctl, p)
		}
		if p.RTCBase != "localtime" {
			t.Errorf("RTC base %s without RealTimeIsUniversal", p.RTCBase)
		}
	}
	// Without KVM: TCG, said so; --accel kvm refused.
	p, err := NewProfile(Facts{Controller: IDE, Firmware: BIOS}, Options{}, false, "permission denied")
	if err != nil || p.Accel != "tcg" || p.CPUModel != "max" || !strings.Contains(strings.Join(p.Notes, "\n"), "permission denied") {
		t.Fatalf("TCG fallback: %+v %v", p, err)
	}
	if p.NIC != "" {
		t.Fatalf("network on by default: %+v", p)
	}
	if _, err := NewProfile(Facts{Controller: IDE, Firmware: BIOS}, Options{Accel: "kvm"}, false, "no /dev/kvm"); err == nil {
		t.Fatal("--accel kvm accepted without KVM")
	}
	p, _ = NewProfile(Facts{Controller: IDE, Firmware: BIOS, RTCIsUTC: true}, Options{MemoryMiB: 3000}, true, "")
	if p.RTCBase != "utc" || p.MemoryMiB != 3000 {
		t.Fatalf("overrides: %+v", p)
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	argv := []string{"-drive", "file.server.path=/tmp/a b,,c/sock", "it's", "", "$HOME", "a*?[x]", "x;y|z&", "plain-arg=1,2:3"}
	line := ShellQuote(argv)
	got, err := exec.Command("sh", "-c", `f() { for a in "$@"; do printf '%s\0' "$a"; done; }; f `+line).Output()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSuffix(string(got), "\x00"), "\x00")
	if !reflect.DeepEqual(parts, argv) {
		t.Fatalf("sh read %q back as %q", line, parts)
	}
}

func TestDriveSpecEscapesAndForms(t *testing.T) {
	p := Profile{Machine: "pc", Controller: IDE, Firmware: BIOS, Accel: "tcg", CPUModel: "max", MemoryMiB: 1024, CPUs: 1, RTCBase: "localtime", Display: "none", ReadOnly: true}
	a, err := QEMUArgs(p, Disk{Socket: "/run/a,b.sock", Export: "x", TLSDir: "/etc/pki/c,d"}, UEFIFiles{}, []string{"-S"})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(a, " ")
	for _, want := range []string{
		"file.server.path=/run/a,,b.sock", "file.export=x", "file.tls-creds=" + TLSID, "snapshot=on",
		"tls-creds-x509,id=" + TLSID + ",endpoint=client,dir=/etc/pki/c,,d", "-nic none", "-machine pc,accel=tcg",
		"ide-hd,drive=" + DiskID + ",bus=ide.0", "-S",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q:\n%s", want, line)
		}
	}
	if a[len(a)-1] != "-S" {
		t.Error("extra arguments not last")
	}
	p.Firmware = UEFI
	if _, err := QEMUArgs(p, Disk{Socket: "/s"}, UEFIFiles{}, nil); err == nil {
		t.Error("UEFI without OVMF files accepted")
	}
}

func TestLibvirtXMLValidates(t *testing.T) {
	validate, err := exec.LookPath("virt-xml-validate")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("virt-xml-validate not installed (libvirt-clients)")
		}
		t.Skip("virt-xml-validate not installed")
	}
	dir := t.TempDir()
	for _, ctl := range []Controller{IDE, AHCI, NVMe} {
		for _, fw := range []Firmware{BIOS, UEFI} {
			for _, net := range []bool{false, true} {
				p, err := NewProfile(Facts{Controller: ctl, Firmware: fw, WindowsMajor: 10}, Options{Network: net, ReadOnly: net}, !net, "test")
				if err != nil {
					t.Fatal(err)
				}
				b, err := LibvirtXML(DomainName("w10 & <x>.img"), p, Disk{Socket: "/run/kvmify/w10.sock"},
					UEFIFiles{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/var/lib/x/w10.OVMF_VARS.fd"})
				if err != nil {
					t.Fatal(err)
				}
				var probe struct {
					XMLName xml.Name
				}
				if err := xml.Unmarshal(b, &probe); err != nil {
					t.Fatalf("not XML: %v\n%s", err, b)
				}
				f := filepath.Join(dir, "dom.xml")
				os.WriteFile(f, b, 0o644)
				out, err := exec.Command(validate, f, "domain").CombinedOutput()
				if err != nil {
					t.Fatalf("%s/%s: virt-xml-validate: %v\n%s\n%s", ctl, fw, err, out, b)
				}
				if fw == UEFI && !bytes.Contains(b, []byte("<nvram>/var/lib/x/w10.OVMF_VARS.fd</nvram>")) {
					t.Errorf("UEFI domain without NVRAM:\n%s", b)
				}
				if ctl == NVMe && !bytes.Contains(b, []byte("nvme,drive=")) {
					t.Errorf("NVMe domain without the controller:\n%s", b)
				}
			}
		}
	}
}
