package nbd

import (
	"errors"
	"io"
)

// requestReader buffers the request stream of a connection in the
// transmission phase. Unlike bufio.Reader, which moves unread bytes to the
// front of its buffer on every refill, it moves them only when what Peek
// asks for would not fit before the buffer's end, so a WRITE payload handed
// to the backend in place (quickWriteInPlace) is copied rarely, not once
// per request.
type requestReader struct {
	rd    io.Reader
	buf   []byte
	r, w  int   // unread bytes are buf[r:w]
	moved int64 // bytes Peek moved to the front, for tests
}

// errPeekTooLarge is Peek's answer to a request larger than the buffer.
var errPeekTooLarge = errors.New("nbd: peek larger than the request buffer")

func newRequestReader(rd io.Reader, size int) *requestReader {
	return &requestReader{rd: rd, buf: make([]byte, size)}
}

// Size is the most Peek can return.
func (b *requestReader) Size() int { return len(b.buf) }

// Buffered is how many bytes can be read without reading the connection.
func (b *requestReader) Buffered() int { return b.w - b.r }

// Read reads what is buffered, or, with nothing buffered, at most one read
// of the connection: straight into p when p is as large as the buffer.
func (b *requestReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
		if len(p) >= len(b.buf) {
			return b.rd.Read(p)
		}
		n, err := b.rd.Read(b.buf)
		b.w = n
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// Peek returns the next n bytes without consuming them, valid until the
// reader is next used. On an error it returns what it has with the error.
func (b *requestReader) Peek(n int) ([]byte, error) {
	if n > len(b.buf) {
		return nil, errPeekTooLarge
	}
	for b.w-b.r < n {
		if len(b.buf)-b.r < n {
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.moved += int64(b.w)
			b.r = 0
		}
		m, err := b.rd.Read(b.buf[b.w:])
		b.w += m
		if err != nil {
			return b.buf[b.r:b.w], err
		}
		if m == 0 {
			return b.buf[b.r:b.w], io.ErrNoProgress
		}
	}
	return b.buf[b.r : b.r+n], nil
}

// Discard skips the next n bytes, reading the connection as needed.
func (b *requestReader) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if b.r == b.w {
			b.r, b.w = 0, 0
			m, err := b.rd.Read(b.buf)
			b.w = m
			if m == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return done, err
			}
		}
		k := min(n-done, b.w-b.r)
		b.r += k
		done += k
	}
	return done, nil
}
