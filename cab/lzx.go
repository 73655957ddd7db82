package cab

import "fmt"

func newLZX(window int) (decompressor, error) {
	return nil, fmt.Errorf("%w: LZX:%d not yet", ErrUnsupported, window)
}
