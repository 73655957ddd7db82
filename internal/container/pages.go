package container

import (
	"bytes"
	"encoding/binary"
	"os"
)

// FuzzPageSize is the page size of the fuzz encoding.
const FuzzPageSize = 4096

// EncodePages encodes the non-zero 4 KiB pages of b (and the last, which
// keeps the length) as records of a
// little-endian uint32 page number and the page, so a fuzz seed of a
// mostly empty multi-MiB image stays small and its mutations land on
// structures rather than on zeros.
func EncodePages(b []byte) []byte {
	var out []byte
	zero := make([]byte, FuzzPageSize)
	for i := 0; i*FuzzPageSize < len(b); i++ {
		p := b[i*FuzzPageSize : min(len(b), (i+1)*FuzzPageSize)]
		last := (i+1)*FuzzPageSize >= len(b)
		if bytes.Equal(p, zero[:len(p)]) && !last {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(i))
		out = append(out, p...)
	}
	return out
}

// WritePages writes the file an EncodePages record list describes (pages
// numbered past maxPages are dropped, a short last record is kept short)
// to path, sparse.
func WritePages(path string, data []byte, maxPages uint32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var end int64
	for len(data) >= 4 {
		n := binary.LittleEndian.Uint32(data)
		data = data[4:]
		p := data[:min(len(data), FuzzPageSize)]
		data = data[len(p):]
		if n >= maxPages {
			continue
		}
		off := int64(n) * FuzzPageSize
		if _, err := f.WriteAt(p, off); err != nil {
			return err
		}
		end = max(end, off+int64(len(p)))
	}
	return f.Truncate(end)
}
