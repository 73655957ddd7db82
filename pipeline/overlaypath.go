package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kvmify/kvmify/nbdclient"
	"github.com/kvmify/kvmify/outpath"
)

// OverlayDir is where default overlays live: $XDG_STATE_HOME/kvmify/overlays,
// or ~/.local/state/kvmify/overlays when XDG_STATE_HOME is unset (the XDG
// base directory default). Not beside the image: evidence directories are
// often read-only, and the same image must find the same overlay from any
// working directory.
func OverlayDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no $XDG_STATE_HOME and no home directory for the default overlay (%v); pass --overlay PATH or --ephemeral", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "kvmify", "overlays"), nil
}

// DefaultOverlayPath is the overlay the image at path uses when none is
// named: in OverlayDir, named after the image's base name and a hash of its
// resolved absolute path and file identity (device and inode), so the same
// file reached from any directory or through any symlink finds the same
// overlay, and a different file at the same path does not.
func DefaultOverlayPath(path string) (string, error) {
	dir, err := OverlayDir()
	if err != nil {
		return "", err
	}
	if nbdclient.IsURI(path) {
		// A network source has no file identity: the URI names it.
		h := sha256.Sum256([]byte(path))
		return filepath.Join(dir, "nbd-"+hex.EncodeToString(h[:])[:16]+".kvmify-overlay"), nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no device and inode to identify it", path)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d", real, uint64(st.Dev), uint64(st.Ino))
	id := hex.EncodeToString(h.Sum(nil))[:16]
	return filepath.Join(dir, filepath.Base(real)+"-"+id+".kvmify-overlay"), nil
}

// legacyOverlayPath is where kvmify before this version put the default
// overlay: in the current directory. It is no longer used, only mentioned.
func legacyOverlayPath(image string) string {
	p, err := filepath.Abs(filepath.Base(image) + ".kvmify-overlay")
	if err != nil {
		return ""
	}
	return p
}

// tempOverlayPrefix starts the names of overlays being built for final.
func tempOverlayPrefix(final string) string {
	return outpath.TempPrefix + filepath.Base(final) + "-"
}

// removeStaleTemps deletes temporary overlays for final left by a killed
// run. A temporary overlay is locked (flock) by the run building it, so one
// that can be locked belongs to no live run.
func removeStaleTemps(final string) {
	dir := filepath.Dir(final)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempOverlayPrefix(final)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
