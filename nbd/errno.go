package nbd

import (
	"errors"
	"os"
	"syscall"

	"github.com/kvmify/kvmify/disk"
)

// errnoFor maps a backend error to the errno sent to the client; it is the
// only place where Go errors become NBD errors.
func errnoFor(err error) uint32 {
	switch {
	case err == nil:
		return errnoOK
	case errors.Is(err, disk.ErrReadOnly), errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EROFS):
		return errnoPerm
	case errors.Is(err, disk.ErrOutOfRange), errors.Is(err, syscall.EINVAL):
		return errnoInval
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errnoNoSpc
	case errors.Is(err, syscall.ENOMEM):
		return errnoNoMem
	case errors.Is(err, errors.ErrUnsupported), errors.Is(err, syscall.ENOTSUP):
		return errnoNotSup
	default:
		return errnoIO
	}
}
