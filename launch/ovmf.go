package launch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ovmfPairs are the OVMF builds Debian's ovmf package installs, newest
// layout first. Code and variable store must come from the same build (their
// flash sizes must match). The secure-boot builds are skipped: they need SMM
// and enrolled keys, and the Windows versions kvmify boots run without.
var ovmfPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// ErrNoOVMF means no OVMF firmware is installed.
var ErrNoOVMF = errors.New("no OVMF firmware found (install Debian's ovmf package)")

// FindOVMF returns the installed OVMF code image and the pristine variable
// store template that goes with it.
func FindOVMF() (code, varsTemplate string, err error) {
	for _, p := range ovmfPairs {
		if fileExists(p[0]) && fileExists(p[1]) {
			return p[0], p[1], nil
		}
	}
	return "", "", ErrNoOVMF
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// VarsPath is where a VM's own UEFI variable store lives: beside its
// overlay, so the VM's NVRAM (boot entries) persists with its disk state.
func VarsPath(overlayPath string) string { return overlayPath + ".OVMF_VARS.fd" }

// PrepareVars makes the per-VM variable store at path from template unless
// it exists already, and returns the UEFI files to boot with. With dryRun it
// only says which files it would use.
func PrepareVars(path string, dryRun bool) (UEFIFiles, error) {
	code, tmpl, err := FindOVMF()
	if err != nil {
		return UEFIFiles{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return UEFIFiles{}, err
	}
	files := UEFIFiles{Code: code, Vars: abs}
	if _, err := os.Stat(abs); err == nil || dryRun {
		return files, nil
	}
	if err := copyNew(tmpl, abs); err != nil {
		return UEFIFiles{}, fmt.Errorf("making the VM's UEFI variable store: %w", err)
	}
	return files, nil
}

// copyNew copies src to a temporary file beside dst and renames it into
// place, so a crash never leaves a partial store under dst's name.
func copyNew(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
