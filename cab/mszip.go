package cab

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
)

// mszipSignature starts every MSZIP block's payload.
const mszipSignature = "CK"

// mszip decodes MSZIP blocks: each payload is "CK" and a complete deflate
// stream (RFC 1951) whose back-references may reach into the previous
// block's output, which is therefore handed to flate as a preset dictionary.
type mszip struct {
	dict []byte
	br   bytes.Reader
	fr   io.ReadCloser
}

func (m *mszip) decode(in, out []byte) error {
	if len(in) < len(mszipSignature) || string(in[:2]) != mszipSignature {
		return fmt.Errorf("%w: MSZIP block lacks the %q signature", ErrCorrupt, mszipSignature)
	}
	m.br.Reset(in[2:])
	if m.fr == nil {
		m.fr = flate.NewReaderDict(&m.br, m.dict)
	} else if err := m.fr.(flate.Resetter).Reset(&m.br, m.dict); err != nil {
		return err
	}
	n, err := io.ReadFull(m.fr, out)
	if err != nil {
		return fmt.Errorf("%w: deflate data gives %d of %d bytes: %v", ErrCorrupt, n, len(out), err)
	}
	var one [1]byte
	if k, err := m.fr.Read(one[:]); k != 0 || err != io.EOF {
		if k != 0 {
			return fmt.Errorf("%w: deflate data expands past the block's %d bytes", ErrCorrupt, len(out))
		}
		return fmt.Errorf("%w: deflate data after the block's %d bytes: %v", ErrCorrupt, len(out), err)
	}
	m.dict = append(m.dict[:0], out...)
	return nil
}
