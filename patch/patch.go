// Package patch puts a boot-fix plan into a copy-on-write overlay exactly
// once and records that it did, so that a restarted server serves the
// overlay as it is: the guest's later changes to the hive are never
// overwritten by a second patch.
package patch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kvmify/kvmify/overlay"

	"github.com/kvmify/kvmify/disk"
)

// MetaKey is the overlay metadata key under which the Record is stored.
const MetaKey = "kvmify.patch"

// Change is one registry change as shown to people: values are rendered
// (numbers, strings, hex) by the caller.
type Change struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Op    string `json:"op"`
	Type  string `json:"type,omitempty"`
	Old   any    `json:"old"`
	New   any    `json:"new"`
}

// Extent is one changed disk range with the hashes of its bytes before and
// after, so an examiner can verify both the source and the export.
type Extent struct {
	Offset    int64  `json:"offset"`
	Length    int64  `json:"length"`
	What      string `json:"what"`
	OldSHA256 string `json:"old_sha256"`
	NewSHA256 string `json:"new_sha256"`
}

// Record is what was applied to an overlay; it is also the core of the
// forensic report.
type Record struct {
	Tool            string    `json:"tool"`
	AppliedAt       time.Time `json:"applied_at"`
	Source          string    `json:"source"`
	SourceSize      int64     `json:"source_size"`
	Partition       int       `json:"partition"`
	WindowsDir      string    `json:"windows_dir"`
	WindowsVersion  string    `json:"windows_version"`
	HiveState       string    `json:"hive_state"`
	Target          string    `json:"target"`
	Profile         string    `json:"profile"`
	RegistryChanges []Change  `json:"registry_changes"`
	Extents         []Extent  `json:"extents"`
	Notes           []string  `json:"notes,omitempty"`
	// Before and After are the boot predictions for Target on the disk as
	// found and as patched.
	Before *Prediction `json:"prediction_before,omitempty"`
	After  *Prediction `json:"prediction_after,omitempty"`
	// CreatedFiles are files the patch created (XP's IDE drivers).
	CreatedFiles []CreatedFile `json:"created_files,omitempty"`
}

// Prediction is a boot prediction as recorded: "boots" or "0x7B", and why.
type Prediction struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// CreatedFile is one file a patch created, with where its bytes came from.
type CreatedFile struct {
	Path        string    `json:"path"` // from the volume root
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Cabinet     string    `json:"cabinet"`
	Member      string    `json:"member"`
	ServicePack int       `json:"service_pack"`
	Version     string    `json:"version,omitempty"`
	MFTRecord   uint64    `json:"mft_record"`
	CreatedAt   time.Time `json:"created_at"` // the times recorded in the file system
}

// ErrNotFresh means the overlay already holds changes that are not a
// recorded patch: patching over a guest's writes could corrupt them.
var ErrNotFresh = errors.New("overlay already holds changes but no recorded patch")

// Describe fills rec.Extents from the writes, hashing each write's old bytes
// (read from src) and new bytes.
func Describe(rec *Record, src io.ReaderAt, writes []disk.Write) error {
	rec.Extents = rec.Extents[:0]
	for _, w := range writes {
		old := make([]byte, len(w.Data))
		if _, err := src.ReadAt(old, w.Offset); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading source at %d: %w", w.Offset, err)
		}
		rec.Extents = append(rec.Extents, Extent{
			Offset: w.Offset, Length: int64(len(w.Data)), What: w.What,
			OldSHA256: sum(old), NewSHA256: sum(w.Data),
		})
	}
	return nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Applied returns the record of the patch already in ov, if any.
func Applied(ov *overlay.Overlay) (*Record, bool, error) {
	b, ok := ov.Meta(MetaKey)
	if !ok {
		return nil, false, nil
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, true, fmt.Errorf("overlay patch record: %w", err)
	}
	return &rec, true, nil
}

// Apply writes the plan into ov, which must hold no changes yet, and records
// rec durably with it. A crash before the record is committed leaves the
// overlay as it was (nothing flushed), so the patch is simply made again.
func Apply(ov *overlay.Overlay, writes []disk.Write, rec *Record) error {
	if _, ok := ov.Meta(MetaKey); ok {
		return errors.New("overlay already holds a patch")
	}
	if len(ov.Changes()) != 0 {
		return ErrNotFresh
	}
	for _, w := range writes {
		if w.Offset < 0 || w.Offset+int64(len(w.Data)) > ov.Size() {
			return fmt.Errorf("plan write %s at %d+%d lies outside the disk", w.What, w.Offset, len(w.Data))
		}
		if _, err := ov.WriteAt(w.Data, w.Offset); err != nil {
			return fmt.Errorf("writing %s at %d: %w", w.What, w.Offset, err)
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return ov.SetMeta(MetaKey, b)
}
