package pipeline

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kvmify/kvmify/bootfix"
	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/ewf"
	"github.com/kvmify/kvmify/outpath"
	"github.com/kvmify/kvmify/overlay"
	"github.com/kvmify/kvmify/patch"
)

// Report is the forensic JSON written by --report.
type Report struct {
	Tool         string   `json:"tool"`
	Source       string   `json:"source"`
	SourceFiles  []string `json:"source_files"`
	SourceSize   int64    `json:"source_size"`
	SourceSHA256 string   `json:"source_sha256,omitempty"`
	// SourceDigests compares the digests an evidence container stores
	// (E01: MD5, SHA-1 of the media) with the ones computed with --hash.
	SourceDigests []DigestCheck `json:"source_digests,omitempty"`
	Overlay       string        `json:"overlay"`
	Patch         *patch.Record `json:"patch"`
	// Changed lists every extent the overlay holds (patch and guest writes
	// alike); the report is rewritten at exit with the final ones.
	Changed []overlay.Extent `json:"overlay_extents"`
}

// Report returns the report on the session as it stands.
func (s *Session) Report() Report {
	var changed []overlay.Extent
	if s.Overlay != nil {
		changed = s.Overlay.Changes()
	}
	return s.report(changed)
}

func (s *Session) report(changed []overlay.Extent) Report {
	src, _ := filepath.Abs(s.req.Image)
	ov := s.OverlayPath
	if ov == "" && s.Overlay != nil {
		ov = "(ephemeral)"
	}
	if changed == nil {
		changed = []overlay.Extent{}
	}
	return Report{Tool: s.req.Tool, Source: src, SourceFiles: s.Source.InputFiles(), SourceSize: s.Source.Size(),
		SourceSHA256: s.sha256, SourceDigests: s.digests, Overlay: ov, Patch: s.Record, Changed: changed}
}

// WriteReport writes the report to the requested path (through a temporary
// file renamed into place), hashing the source first when asked.
func (s *Session) WriteReport(ctx context.Context) error {
	if s.req.Hash && s.sha256 == "" {
		sums, err := hashDisk(ctx, s.Source)
		if err != nil {
			return fmt.Errorf("hashing the source: %w", err)
		}
		s.sha256 = sums.sha256
		if st, ok := s.Source.(storedDigests); ok {
			stored := st.Hashes()
			for _, d := range []struct {
				name             string
				stored, computed string
			}{{"md5", hex.EncodeToString(stored.MD5), sums.md5}, {"sha1", hex.EncodeToString(stored.SHA1), sums.sha1}} {
				if d.stored != "" {
					s.digests = append(s.digests, DigestCheck{Name: d.name, Stored: d.stored, Computed: d.computed, Match: d.stored == d.computed})
				}
			}
		}
	}
	var changed []overlay.Extent
	if s.Overlay != nil {
		changed = s.Overlay.Changes()
	}
	return s.writeReport(changed)
}

func (s *Session) writeReport(changed []overlay.Extent) error {
	b, err := json.MarshalIndent(s.report(changed), "", "  ")
	if err != nil {
		return err
	}
	// The first write replaces an existing file only with --force (Open
	// checked it); rewrites replace this run's own report.
	replace := s.reported || s.req.Force
	if err := outpath.WriteFile(s.req.Report, append(b, '\n'), 0o644, replace); err != nil {
		return fmt.Errorf("writing the report %s: %w", s.req.Report, err)
	}
	s.reported = true
	return nil
}

// DigestCheck is one digest an evidence container stores, beside the one
// computed over the same media.
type DigestCheck struct {
	Name     string `json:"name"` // md5, sha1
	Stored   string `json:"stored"`
	Computed string `json:"computed"`
	Match    bool   `json:"match"`
}

// storedDigests is implemented by sources that carry digests of their
// media (an E01 set's hash and digest sections).
type storedDigests interface {
	Hashes() ewf.Hashes
}

// diskSums are the digests of one pass over a disk.
type diskSums struct{ sha256, md5, sha1 string }

// HashDisk returns the hex sha256 of a whole disk, stopping when ctx ends.
func HashDisk(ctx context.Context, r disk.Reader) (string, error) {
	s, err := hashDisk(ctx, r)
	return s.sha256, err
}

// hashDisk reads r once and returns its sha256, MD5 and SHA-1 (the last two
// are what evidence containers store).
func hashDisk(ctx context.Context, r disk.Reader) (diskSums, error) {
	h256, h5, h1 := sha256.New(), md5.New(), sha1.New()
	w := io.MultiWriter(h256, h5, h1)
	buf := make([]byte, 4<<20)
	size := r.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return diskSums{}, err
		}
		n := min(int64(len(buf)), size-off)
		if _, err := r.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return diskSums{}, err
		}
		w.Write(buf[:n])
		off += n
	}
	return diskSums{hex.EncodeToString(h256.Sum(nil)), hex.EncodeToString(h5.Sum(nil)), hex.EncodeToString(h1.Sum(nil))}, nil
}

// recordFor turns a plan into the record kept in the overlay and report.
func (s *Session) recordFor(p *Planned) *patch.Record {
	src, _ := filepath.Abs(s.req.Image)
	pl := p.Plan
	rec := &patch.Record{
		Tool: s.req.Tool, AppliedAt: timeNow(),
		Source: src, SourceSize: s.Source.Size(), Partition: p.Volume.Partition.Index,
		WindowsDir: pl.Install.Dir, WindowsVersion: pl.Install.Version.String(), HiveState: string(pl.Install.HiveState),
		Target: string(pl.Target), Profile: pl.Profile, Notes: pl.Notes,
		RegistryChanges: []patch.Change{},
		CreatedFiles:    p.Drivers.createdRecords(), // drivers.go
		Before:          &patch.Prediction{Verdict: pl.Before.Verdict(), Reason: pl.Before.Reason},
		After:           &patch.Prediction{Verdict: pl.After.Verdict(), Reason: pl.After.Reason},
	}
	for _, c := range pl.Changes {
		ch := patch.Change{Key: c.Key, Value: c.Value, Op: string(c.Op), Old: ValueJSON(c.Old), New: ValueJSON(c.New)}
		if c.New != nil {
			ch.Type = TypeName(c.New.Type)
		} else if c.Old != nil {
			ch.Type = TypeName(c.Old.Type)
		}
		rec.RegistryChanges = append(rec.RegistryChanges, ch)
	}
	return rec
}

// ValueJSON renders a registry value for people and scripts: DWORDs as
// numbers, strings as strings, multi-strings as arrays, anything else as
// hex; nil stays null (absent).
func ValueJSON(v *bootfix.Value) any {
	if v == nil {
		return nil
	}
	switch v.Type {
	case bootfix.TypeDWORD:
		if n, ok := v.Uint32(); ok {
			return n
		}
	case bootfix.TypeSZ, bootfix.TypeExpandSZ:
		return v.Text()
	case bootfix.TypeMultiSZ:
		return v.Strings()
	}
	return hex.EncodeToString(v.Data)
}

// TypeName is the REG_* name of a registry value type.
func TypeName(t uint32) string {
	switch t {
	case bootfix.TypeSZ:
		return "REG_SZ"
	case bootfix.TypeExpandSZ:
		return "REG_EXPAND_SZ"
	case bootfix.TypeBinary:
		return "REG_BINARY"
	case bootfix.TypeDWORD:
		return "REG_DWORD"
	case bootfix.TypeMultiSZ:
		return "REG_MULTI_SZ"
	}
	return fmt.Sprintf("0x%x", t)
}
