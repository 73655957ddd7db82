package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/kvmify/kvmify/internal/testutil"
)

// corpusFact is a value stated in ../shared/corpus/README.md (established
// outside kvmify), looked up here with deliberately different letter case.
type corpusFact struct {
	hive, key, value string
	dword            uint32
	str              string // for REG_SZ facts; dword unused then
}

func TestCorpusFacts(t *testing.T) {
	for _, f := range []corpusFact{
		{hive: "xp-sp3-x86.SYSTEM", key: `select`, value: "current", dword: 1},
		{hive: "xp-sp3-x86.SYSTEM", key: `SELECT`, value: "LastKnownGood", dword: 3},
		{hive: "xp-sp3-x86.SYSTEM", key: `controlset001\services\ATAPI`, value: "start", dword: 0},
		{hive: "xp-sp3-x86.SYSTEM", key: `ControlSet001\Services\intelide`, value: "Start", dword: 0},
		{hive: "xp-sp3-x86.SYSTEM", key: `ControlSet001\Services\pciide`, value: "Start", dword: 4},
		{hive: "win7-sp1-x64.SYSTEM", key: `ControlSet001\Services\msahci`, value: "Start", dword: 3},
		{hive: "win7-sp1-x64.SYSTEM", key: `ControlSet001\Services\iaStorV`, value: "Start", dword: 3},
		{hive: "win7-sp1-x64.SYSTEM", key: `ControlSet001\Services\PCIIDE`, value: "Start", dword: 3},
		{hive: "win7-sp1-x64.SYSTEM", key: `ControlSet001\Control\CriticalDeviceDatabase\pci#ven_8086&dev_7010`, value: "service", str: "intelide"},
		{hive: "win10-1709-x64.SYSTEM", key: `ControlSet001\Services\storahci`, value: "Start", dword: 0},
		{hive: "win10-1709-x64.SYSTEM", key: `ControlSet001\Services\storahci\StartOverride`, value: "0", dword: 3},
		{hive: "win10-1709-x64.SYSTEM", key: `\ControlSet001\Services\atapi\StartOverride\`, value: "0", dword: 3},
	} {
		t.Run(f.hive+`\`+f.key+`\`+f.value, func(t *testing.T) {
			h, err := OpenFile(testutil.CorpusFile(t, f.hive))
			if err != nil {
				t.Fatal(err)
			}
			k, err := h.Lookup(f.key)
			if err != nil {
				t.Fatal(err)
			}
			v, err := k.Value(f.value)
			if err != nil {
				t.Fatal(err)
			}
			if f.str != "" {
				if s, err := v.String(); err != nil || s != f.str {
					t.Errorf("got %q, %v; want %q", s, err, f.str)
				}
				return
			}
			if n, err := v.Uint32(); err != nil || n != f.dword {
				t.Errorf("got %d, %v; want %d", n, err, f.dword)
			}
		})
	}
}

// TestCorpusAbsentKeys checks keys the corpus README says are absent.
func TestCorpusAbsentKeys(t *testing.T) {
	h, err := OpenFile(testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	cddb := `ControlSet001\Control\CriticalDeviceDatabase`
	if _, err := h.Lookup(cddb + `\pci#ven_8086&dev_7111`); err != nil {
		t.Errorf("PIIX4 entry: %v", err)
	}
	for _, absent := range []string{`pci#ven_8086&dev_7010`, `pci#cc_0101`} {
		if _, err := h.Lookup(cddb + `\` + absent); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", absent, err)
		}
	}
	w10, err := OpenFile(testutil.CorpusFile(t, "win10-1709-x64.SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w10.Lookup(cddb); !errors.Is(err, ErrNotFound) {
		t.Errorf("Windows 10 CriticalDeviceDatabase: got %v, want ErrNotFound", err)
	}
}

// TestValueDecoding compares String and Strings with what hivexget prints
// for every REG_SZ and REG_MULTI_SZ value of one key, and checks type
// mismatches.
func TestValueDecoding(t *testing.T) {
	hivexget := testutil.RequireTool(t, "hivexget")
	path := testutil.CorpusFile(t, "xp-sp3-x86.SYSTEM")
	h, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const keyPath = `ControlSet001\Services\atapi\Parameters`
	k, err := h.Lookup(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := k.Values()
	if err != nil {
		t.Fatal(err)
	}
	var multi int
	for _, v := range vs {
		var got string
		switch v.Type {
		case RegMultiSZ:
			ss, err := v.Strings()
			if err != nil {
				t.Fatal(err)
			}
			got = strings.Join(ss, "\n")
			multi++
			if _, err := v.String(); err == nil {
				t.Errorf("String of REG_MULTI_SZ succeeded")
			}
		case RegSZ, RegExpandSZ:
			if got, err = v.String(); err != nil {
				t.Fatal(err)
			}
		default:
			continue
		}
		out, err := exec.Command(hivexget, path, `\`+keyPath, v.Name).Output()
		if err != nil {
			t.Fatalf("hivexget %s: %v", v.Name, err)
		}
		if want := strings.TrimRight(string(out), "\n"); got != want {
			t.Errorf("%s: got %q, hivexget says %q", v.Name, got, want)
		}
		if _, err := v.Uint32(); err == nil {
			t.Errorf("Uint32 of %v succeeded", v.Type)
		}
	}
	if multi < 5 {
		t.Errorf("only %d REG_MULTI_SZ values compared", multi)
	}
	if got := RegMultiSZ.String(); got != "REG_MULTI_SZ" {
		t.Errorf("RegMultiSZ.String() = %q", got)
	}
	if got := ValueType(0x1234).String(); got != "0x1234" {
		t.Errorf("unknown type String() = %q", got)
	}
}

// TestSecurityDescriptors reads every key's descriptor in a real hive: each
// must be a self-relative, revision 1 descriptor (as Windows stores them).
func TestSecurityDescriptors(t *testing.T) {
	h, err := OpenFile(testutil.CorpusFile(t, "win7-sp1-x64.SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = h.Walk(func(k *Key) error {
		sd, err := k.SecurityDescriptor()
		if err != nil {
			return err
		}
		if len(sd) < sdHeaderSize || sd[0] != sdRevision || binary.LittleEndian.Uint16(sd[sdControlOff:])&sdSelfRelative == 0 {
			return fmt.Errorf("key %q: descriptor % x is not self-relative revision 1", k.Path(), sd[:min(len(sd), sdHeaderSize)])
		}
		n++
		return nil
	})
	if err != nil || n < 1000 {
		t.Fatalf("%d descriptors read: %v", n, err)
	}
}
