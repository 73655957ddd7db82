package registry

import (
	"bytes"
	"testing"
	"time"
)

// fuzzNames are the key and value names FuzzEdit's ops pick from: few
// enough that ops hit the same keys, varied enough to need every name form.
var fuzzNames = []string{"a", "A", "b", "Services", "ß", "Ж", "日本", "😀", "k1", "K2", "", "zz"}

// fuzzPath decodes a key path of up to three components from two bytes.
func fuzzPath(b0, b1 byte) string {
	depth := int(b0 % 4)
	var p string
	for i := 0; i < depth; i++ {
		n := fuzzNames[int(b1>>(2*i))%len(fuzzNames)]
		if n == "" {
			n = "e"
		}
		p = joinPath(p, n)
	}
	return p
}

// FuzzEdit decodes a sequence of edits from the input, applies it to a hive
// made with New, and requires that every save reopens, passes Check and
// changes only the bytes it reports; errors from edits are fine, panics and
// inconsistent hives are not.
func FuzzEdit(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 2, 1, 2, 3, 4})
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 5, 3, 0xff, 0xff, 0x40, 1, 2, 3, 4, 5, 6, 7})
	f.Add(bytes.Repeat([]byte{0, 3, 0x1b, 1, 1, 1, 1, 1}, 40))
	f.Add(bytes.Repeat([]byte{0, 2, 0x2d, 9, 1, 3, 0x80, 0x41, 4, 1, 0xe4, 2, 7}, 30))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		minor := uint32(3 + in[0]%4)
		h, err := New(NewOptions{MinorVersion: minor, Time: editTime})
		if err != nil {
			t.Fatal(err)
		}
		ed := newEditor(t, h)
		ed.maxLeaf = 2 + int(in[1]%8)
		before := h.Bytes()
		in = in[2:]
		const opSize = 6
		for n := 0; len(in) >= opSize; n++ {
			op := in[:opSize]
			in = in[opSize:]
			path := fuzzPath(op[1], op[2])
			name := fuzzNames[int(op[3])%len(fuzzNames)]
			switch op[0] % 5 {
			case 0, 1:
				_ = ed.CreateKey(path)
			case 2:
				size := int(op[4]) * int(op[5]) * 2 // up to 130050 bytes: big data too
				if op[5] < 0x80 {
					size = int(op[4]) % 8
				}
				data := bytes.Repeat([]byte{op[4]}, size)
				_ = ed.SetValue(path, name, ValueType(op[5]%12), data)
			case 3:
				_ = ed.DeleteValue(path, name)
			case 4:
				_ = ed.DeleteKey(path)
			}
			if n%8 == 7 || len(in) < opSize {
				res, h2 := saveCheck(t, ed, before)
				before = res.Data
				ed = newEditor(t, h2)
				ed.maxLeaf = 2 + int(op[2]%8)
			}
		}
	})
}

// FuzzEditDamaged overwrites bytes of an edited hive with fuzz data, then, if
// the damaged hive still opens and passes Check, runs a fixed set of edits
// on it: the editor must never panic, and whatever it saves must pass Check.
func FuzzEditDamaged(f *testing.F) {
	h, err := New(NewOptions{Time: editTime})
	if err != nil {
		f.Fatal(err)
	}
	ed := newEditor(f, h)
	for _, p := range []string{`a\b`, `a\c`, `Ж`, `d`} {
		if err := ed.CreateKey(p); err != nil {
			f.Fatal(err)
		}
	}
	_ = ed.SetValue(`a\b`, "v", RegBinary, bytes.Repeat([]byte{1}, 20000))
	_ = ed.SetValue(`a`, "w", RegSZ, utf16z("text"))
	_ = ed.SetValue(`d`, "", RegDword, dword(4))
	res, err := ed.Save()
	if err != nil {
		f.Fatal(err)
	}
	base := res.Data
	f.Add([]byte{0x10, 0x20, 0xff, 0x00})
	f.Add([]byte{0x00, 0x01, 0x00, 0x02, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, patch []byte) {
		data := bytes.Clone(base)
		// Each 3-byte patch: a 16-bit offset into the hive bins, one byte.
		for i := 0; i+3 <= len(patch); i += 3 {
			off := BaseBlockSize + (int(patch[i])|int(patch[i+1])<<8)%(len(data)-BaseBlockSize)
			data[off] = patch[i+2]
		}
		h, err := Open(data)
		if err != nil {
			return
		}
		ed, err := NewEditor(h)
		if err != nil {
			return
		}
		ed.Now = func() time.Time { return editTime }
		_ = ed.CreateKey(`a\new`)
		_ = ed.SetValue(`a\b`, "v", RegBinary, []byte{1, 2, 3, 4, 5, 6})
		_ = ed.SetValue(`d`, "x", RegQword, bytes.Repeat([]byte{9}, 17000))
		_ = ed.DeleteValue(`a`, "w")
		_ = ed.DeleteKey(`a\c`)
		_ = ed.DeleteKey(`Ж`)
		saveCheck(t, ed, data)
	})
}
