package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"

	"github.com/kvmify/kvmify/disk"
)

// hashReader returns the hex sha256 of a whole disk, stopping when ctx ends.
func hashReader(ctx context.Context, r disk.Reader) (string, error) {
	h := sha256.New()
	buf := make([]byte, 4<<20)
	size := r.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
