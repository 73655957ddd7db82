package registry

import (
	"bytes"
	"testing"
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
