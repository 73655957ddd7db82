package pipeline

import (
	"errors"
	"fmt"

	"github.com/kvmify/kvmify/outpath"
)

// UsageError marks an error caused by how the command was called; the CLI
// maps it to exit status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is a UsageError.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// asUsage marks an output path that is an input as a usage error (the
// arguments contradict each other); other path errors stay failures.
func asUsage(err error) error {
	if errors.Is(err, outpath.ErrIsInput) {
		return &UsageError{err}
	}
	return err
}
