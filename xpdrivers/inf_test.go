package xpdrivers

import "testing"

func TestParseINF(t *testing.T) {
	f, err := parseINF([]byte("\uFEFF[Version]\nCabFiles = \"SP3\", driver ; comment\n\n[Cabs]\nSP3=\"sp3.cab\"\r\nx=\"a;b\"\n[SP3]\natapi.sys\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.value("version", "CABFILES"); len(splitList(v)) != 2 || splitList(v)[0] != "SP3" {
		t.Errorf("CabFiles %q", v)
	}
	if v, _ := f.value("Cabs", "sp3"); v != "sp3.cab" {
		t.Errorf("Cabs sp3 = %q", v)
	}
	if v, _ := f.value("Cabs", "x"); v != "a;b" {
		t.Errorf("quoted ';' is no comment: %q", v)
	}
	if l := f["sp3"]; len(l) != 1 || l[0].key != "atapi.sys" {
		t.Errorf("[SP3] %+v", l)
	}
	if _, err := parseINF([]byte("[Version\n")); err == nil {
		t.Errorf("unclosed section header accepted")
	}
}

func FuzzParseINF(f *testing.F) {
	f.Add([]byte(xpIndex))
	f.Add([]byte{0xFF, 0xFE, '[', 0, 'C', 0, ']', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		inf, err := parseINF(b)
		if err != nil {
			return
		}
		v, _ := inf.value("Version", "CabFiles")
		_ = splitList(v)
	})
}
