package windows

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// VolumeState is what the file-system layer knows about a volume's
// consistency; the NTFS flags are filled in by the caller that opened the
// volume.
type VolumeState struct {
	Dirty          bool // NTFS volume dirty flag set
	LogFileUnclean bool // $LogFile holds records Windows has not yet applied
	FastStartup    bool // $LogFile left in the state Fast Startup (hybrid shutdown) leaves
	BitLocker      bool // the volume is BitLocker-encrypted
	Hibernated     bool // hiberfil.sys holds a live hibernation image
	// Hiberfil is the signature found at the start of hiberfil.sys, or "".
	Hiberfil string
}

// Signatures at the start of hiberfil.sys that mean Windows will resume
// from it (a resumed system would overwrite anything patched on disk).
var liveHiberSignatures = []string{"hibr", "HIBR", "wake", "WAKE", "RSTR"}

const (
	hiberfilPath    = "hiberfil.sys"
	hiberSignatureN = 4
)

// Hiberfil reads hiberfil.sys's signature and reports whether it holds a
// live hibernation image; a missing or zeroed file is not hibernated.
func Hiberfil(fsys FS) (signature string, hibernated bool, err error) {
	r, err := fsys.Open(hiberfilPath)
	if errors.Is(err, errNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	b := make([]byte, hiberSignatureN)
	if n, err := r.ReadAt(b, 0); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return "", false, nil
		}
		return "", false, err
	}
	sig := string(b)
	for _, s := range liveHiberSignatures {
		if sig == s {
			return sig, true, nil
		}
	}
	return strings.TrimRight(sig, "\x00"), false, nil
}

// Overrides let a user patch despite a safety refusal, one flag each.
type Overrides struct {
	AllowHibernated bool // --allow-hibernated
	AllowUnclean    bool // --allow-unclean
	AllowDirtyHive  bool // --allow-dirty-hive
}

// ErrUnsafe marks a refusal to patch; errors.As gives the *UnsafeError.
var ErrUnsafe = errors.New("windows: unsafe to patch")

// UnsafeError says why patching was refused and how to proceed.
type UnsafeError struct {
	Reason string
	Advice string
	Flag   string // the override flag, or "" when there is none
}

func (e *UnsafeError) Error() string {
	s := fmt.Sprintf("refusing to patch: %s; %s", e.Reason, e.Advice)
	if e.Flag != "" {
		s += fmt.Sprintf(" (or pass %s to patch anyway)", e.Flag)
	}
	return s
}

// Unwrap makes the error match ErrUnsafe.
func (e *UnsafeError) Unwrap() error { return ErrUnsafe }

// CheckSafety refuses states in which a patch would be lost or would damage
// data: BitLocker (the contents cannot be read), hibernation or Fast
// Startup (Windows resumes its in-memory state over the patch), an unclean
// $LogFile (Windows replays it over the patch), and a dirty hive its logs
// cannot recover.
func CheckSafety(in *Install, vs VolumeState, ov Overrides) error {
	switch {
	case vs.BitLocker:
		return &UnsafeError{Reason: "the volume is BitLocker-encrypted", Advice: "decrypt it in Windows (manage-bde -off) first"}
	case vs.Hibernated && !ov.AllowHibernated:
		return &UnsafeError{Reason: fmt.Sprintf("Windows is hibernated (hiberfil.sys signature %q)", vs.Hiberfil),
			Advice: "boot it on its original hardware and shut down fully (shutdown /s /t 0)", Flag: "--allow-hibernated"}
	case vs.FastStartup && !ov.AllowHibernated:
		return &UnsafeError{Reason: "Windows was shut down with Fast Startup (hybrid shutdown)",
			Advice: "boot it and shut down with shutdown /s /f /t 0, or disable Fast Startup", Flag: "--allow-hibernated"}
	case (vs.LogFileUnclean || vs.Dirty) && !ov.AllowUnclean:
		return &UnsafeError{Reason: "the NTFS volume was not cleanly unmounted ($LogFile or dirty flag)",
			Advice: "let Windows (or ntfsfix / chkdsk) bring it to a clean state first", Flag: "--allow-unclean"}
	case in.HiveState == HiveUnrecoverable && !ov.AllowDirtyHive:
		return &UnsafeError{Reason: "the SYSTEM hive is dirty and its logs cannot recover it (" + in.HiveDetail + ")",
			Advice: "let Windows boot once to recover it, or restore it from RegBack", Flag: "--allow-dirty-hive"}
	}
	return nil
}
