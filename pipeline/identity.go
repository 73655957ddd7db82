package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvmify/kvmify/overlay"
)

// identityKey is the overlay metadata key that binds an overlay to the
// container it was made over, beside the overlay's own binding to the
// logical disk (size and sampled fingerprint): a segment set swapped for
// another, or a container of another format, is refused even where the
// samples agree.
const identityKey = "kvmify.source"

// sourceIdentity is what identityKey holds: the container format and every
// file it reads, by base name and size, in the container's order. Names are
// kept for messages; sizes and order are compared, so a set copied or
// renamed elsewhere still matches.
type sourceIdentity struct {
	Format string         `json:"format"`
	Files  []identityFile `json:"files"`
}

type identityFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// identityOf describes src; a file that cannot be stat'ed (an NBD URI has
// none) is left out.
func identityOf(src Source) sourceIdentity {
	id := sourceIdentity{Format: src.Format(), Files: []identityFile{}}
	for _, f := range src.InputFiles() {
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		id.Files = append(id.Files, identityFile{Name: filepath.Base(f), Size: fi.Size()})
	}
	return id
}

// bindIdentity records src's identity in ov, committed with ov's next
// commit.
func bindIdentity(ov *overlay.Overlay, src Source) error {
	b, err := json.Marshal(identityOf(src))
	if err != nil {
		return err
	}
	return ov.SetMeta(identityKey, b)
}

// checkIdentity refuses ov when it records a container identity src does
// not have. Overlays made before identities were recorded pass.
func checkIdentity(ov *overlay.Overlay, path string, src Source) error {
	b, ok := ov.Meta(identityKey)
	if !ok {
		return nil
	}
	var want sourceIdentity
	if err := json.Unmarshal(b, &want); err != nil {
		return fmt.Errorf("overlay %s: its source identity record: %w", path, err)
	}
	got := identityOf(src)
	mismatch := want.Format != got.Format || len(want.Files) != len(got.Files)
	for i := 0; !mismatch && i < len(want.Files); i++ {
		mismatch = want.Files[i].Size != got.Files[i].Size
	}
	if mismatch {
		return fmt.Errorf("%w: overlay %s was made over a %s source of %s, but this source is %s of %s; use the image it was made for, or another --overlay PATH (or --ephemeral)",
			overlay.ErrSourceMismatch, path, want.Format, describeFiles(want.Files), got.Format, describeFiles(got.Files))
	}
	return nil
}

func describeFiles(fs []identityFile) string {
	if len(fs) == 1 {
		return fmt.Sprintf("%s (%d bytes)", fs[0].Name, fs[0].Size)
	}
	return fmt.Sprintf("%d files", len(fs))
}
