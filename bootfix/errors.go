package bootfix

import "errors"

// Sentinels for errors.Is.
var (
	// ErrNoControlSet marks a hive whose Select\Current does not name an
	// existing ControlSetNNN, so it is not a usable SYSTEM hive.
	ErrNoControlSet = errors.New("bootfix: no current control set")
	// ErrUnknownTarget marks a controller name bootfix has no model for.
	ErrUnknownTarget = errors.New("bootfix: unknown target controller")
	// ErrUnsupported marks a Windows version / target pair with no profile
	// (for example AHCI on XP, which has no inbox AHCI driver).
	ErrUnsupported = errors.New("bootfix: no boot-fix profile")
)
