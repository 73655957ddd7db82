package cab

import (
	"fmt"
	"io"
)

// decompressor expands one CFDATA block's payload into out, whose length is
// the block's cbUncomp. Its state (MSZIP's dictionary, LZX's window and
// trees) carries from block to block of one folder.
type decompressor interface {
	decode(in, out []byte) error
}

// stored is the decompressor of an uncompressed folder.
type stored struct{}

func (stored) decode(in, out []byte) error {
	if len(in) != len(out) {
		return fmt.Errorf("%w: stored block of %d bytes claims %d uncompressed", ErrCorrupt, len(in), len(out))
	}
	copy(out, in)
	return nil
}

func newDecompressor(c Compression) (decompressor, error) {
	switch c.Method() {
	case CompressNone:
		return stored{}, nil
	case CompressMSZIP:
		return &mszip{}, nil
	case CompressLZX:
		return newLZX(c.Window())
	case CompressQuantum:
		return nil, fmt.Errorf("%w: %v (cab reads stored, MSZIP and LZX folders)", ErrUnsupported, c)
	}
	return nil, fmt.Errorf("%w: unknown method %v", ErrUnsupported, c)
}

// folderStream reads a folder's uncompressed bytes in order, one CFDATA
// block at a time: the memory it holds is one block in, one block out and
// the decompressor's state.
type folderStream struct {
	c     *Cabinet
	f     *Folder
	dec   decompressor
	next  int64 // offset of the next CFDATA block
	block int   // blocks read so far
	hdr   []byte
	in    []byte
	out   []byte
	avail []byte // decoded bytes not yet returned
	pos   int64  // folder offset of avail[0]
}

// openFolder starts reading folder i from its first byte.
func (c *Cabinet) openFolder(i int) (*folderStream, error) {
	f := &c.Folders[i]
	dec, err := newDecompressor(f.Compression)
	if err != nil {
		return nil, formatErr(f.Offset+6, "CFFOLDER typeCompress", err, fmt.Sprintf("0x%04x", uint16(f.Compression)), "folder %d: %v", i, err)
	}
	return &folderStream{
		c: c, f: f, dec: dec, next: f.DataOffset,
		hdr: make([]byte, cfdataSize+c.Header.DataReserve),
		out: make([]byte, maxFrame),
	}, nil
}

// Read implements io.Reader over the folder's uncompressed bytes.
func (s *folderStream) Read(p []byte) (int, error) {
	if len(s.avail) == 0 {
		if err := s.nextBlock(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.avail)
	s.avail = s.avail[n:]
	s.pos += int64(n)
	return n, nil
}

// skip discards n bytes.
func (s *folderStream) skip(n int64) error {
	for n > 0 {
		if len(s.avail) == 0 {
			if err := s.nextBlock(); err != nil {
				return err
			}
		}
		k := int64(len(s.avail))
		if k > n {
			k = n
		}
		s.avail = s.avail[k:]
		s.pos += k
		n -= k
	}
	return nil
}

// nextBlock reads, verifies and decodes the next CFDATA block; io.EOF after
// the folder's last one.
func (s *folderStream) nextBlock() error {
	for len(s.avail) == 0 {
		if s.block >= s.f.DataBlocks {
			return io.EOF
		}
		at := s.next
		if err := s.c.readAt(s.hdr, at, "CFDATA header"); err != nil {
			return err
		}
		sum := le32(s.hdr)
		cbData, cbUncomp := int(le16(s.hdr[4:])), int(le16(s.hdr[6:]))
		if cbUncomp == 0 {
			// MS-CAB marks a block split across cabinets with cbUncomp 0;
			// its rest is in the next cabinet, which we are not given.
			return formatErr(at, "CFDATA", ErrSplit, s.c.Header.NextCabinet,
				"block %d of folder %d continues in the next cabinet of the set", s.block, s.f.Index)
		}
		if cbUncomp > maxFrame {
			return formatErr(at+6, "CFDATA cbUncomp", ErrFormat, cbUncomp, "block expands past the %d bytes MS-CAB allows", maxFrame)
		}
		dataAt := at + int64(len(s.hdr))
		if cap(s.in) < cbData {
			s.in = make([]byte, cbData)
		}
		in := s.in[:cbData]
		if err := s.c.readAt(in, dataAt, "CFDATA data"); err != nil {
			return err
		}
		// The checksum covers the data, then cbData and cbUncomp (as
		// cabextract computes it); zero means none was recorded.
		if sum != 0 {
			if got := checksum(s.hdr[4:8], checksum(in, 0)); got != sum {
				return formatErr(at, "CFDATA csum", ErrChecksum, fmt.Sprintf("0x%08x, computed 0x%08x", sum, got),
					"block %d of folder %d", s.block, s.f.Index)
			}
		}
		out := s.out[:cbUncomp]
		if err := s.dec.decode(in, out); err != nil {
			return &FormatError{Offset: dataAt, Structure: "CFDATA data",
				Msg: fmt.Sprintf("block %d of folder %d (%v, uncompressed offset %d): %v", s.block, s.f.Index, s.f.Compression, s.pos, err),
				Err: ErrCorrupt}
		}
		s.avail = out
		s.block++
		s.next = dataAt + int64(cbData)
	}
	return nil
}
