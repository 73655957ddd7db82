package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kvmify/kvmify/disk"
	"github.com/kvmify/kvmify/outpath"
	"github.com/kvmify/kvmify/overlay"
	"github.com/kvmify/kvmify/patch"
	"github.com/kvmify/kvmify/windows"
)

// Output is a file the command will write besides the overlay and report
// (export's OUT); Open checks it with the others before creating anything.
type Output struct {
	Path string
	What string // how messages name it, e.g. "the export"
}

// Request is everything a serving command asks of Open.
type Request struct {
	Image string
	Patch PatchOptions
	// Overlay names the overlay file; "" uses DefaultOverlayPath.
	Overlay string
	// Ephemeral keeps the overlay in an unlinked temporary file.
	Ephemeral bool
	// ExistingOverlayOnly uses the default overlay only when it exists, and
	// otherwise an ephemeral one (export: export what serve has served).
	ExistingOverlayOnly bool
	// SourceDirect serves the source itself, with no overlay at all, when
	// nothing will be written (read-only, --no-patch) and no overlay file
	// was named or exists.
	SourceDirect bool
	// Report is the forensic report's path ("" = none); Hash adds the
	// source's sha256 to it. It is written at the end of Open, unless
	// ReportOnSuccess defers it to the command's own WriteReport call
	// (export: no report for a failed export), and rewritten by Close.
	Report          string
	Hash            bool
	ReportOnSuccess bool
	// Force lets existing output files (report, Outputs) be replaced; it
	// never lets one be an input.
	Force   bool
	Outputs []Output
	// Check runs the command's own checks (mount point, socket) after the
	// paths are checked and before anything is created.
	Check func() error
	// Accept sees the plan before it is applied and may refuse it.
	Accept func(*Planned) error
	// FullHash records the sha256 of the whole source in a new overlay (and
	// checks it on every later open) instead of a sampled fingerprint.
	FullHash bool
	// Tool names the program in records and reports ("kvmify v1.2.3").
	Tool   string
	Stderr io.Writer
}

// Session is an opened source and what is served from it.
type Session struct {
	req    Request
	Source Source
	// Overlay is nil when the source is served directly.
	Overlay *overlay.Overlay
	// OverlayPath is the overlay's absolute path ("" when ephemeral or
	// absent).
	OverlayPath string
	// Record is the boot fix the overlay holds (nil: none); Fresh says it
	// was applied by this run.
	Record *patch.Record
	Fresh  bool
	// Planned is this run's plan (nil when nothing was planned).
	Planned *Planned
	// Guard knows every input file, for outputs the command adds later.
	Guard *outpath.Guard

	sha256   string
	digests  []DigestCheck
	reported bool
	closed   bool
}

// Disk is what the command serves: the overlay, or the source itself.
func (s *Session) Disk() disk.Reader {
	if s.Overlay != nil {
		return s.Overlay
	}
	return s.Source
}

// Describe names what is served, for messages.
func (s *Session) Describe() string {
	switch {
	case s.Overlay == nil:
		return "the source directly (no overlay)"
	case s.OverlayPath == "":
		return "an ephemeral overlay"
	}
	return "overlay " + s.OverlayPath
}

func (s *Session) logf(format string, args ...any) {
	if s.req.Stderr != nil {
		fmt.Fprintf(s.req.Stderr, "kvmify: "+format+"\n", args...)
	}
}

// Open runs the pipeline for req, in this order, so that any refusal comes
// before anything is created or changed:
//
//  1. check the options (usage errors);
//  2. open the source once, read-only;
//  3. choose the overlay path and check it, the report and every Output
//     against the input files (outpath), then run req.Check;
//  4. open an existing overlay and check its recorded patch against the
//     request (--no-patch, --target);
//  5. plan the boot fix from the open source and let req.Accept see it;
//  6. apply it in one commit to a new overlay built under a temporary name
//     beside its final path, then link it into place;
//  7. write the report.
//
// The caller serves s.Disk() and must Close the session.
func Open(ctx context.Context, req Request) (_ *Session, err error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	src, err := OpenSource(req.Image)
	if err != nil {
		return nil, err
	}
	s := &Session{req: req, Source: src, Guard: &outpath.Guard{}}
	defer func() {
		if err != nil {
			s.abort()
		}
	}()
	for _, f := range src.InputFiles() {
		if err := s.Guard.AddInput(f, "the source image"); err != nil {
			return nil, err
		}
	}

	// 3. Paths.
	ovPath, err := s.overlayPath()
	if err != nil {
		return nil, err
	}
	req = s.req // overlayPath may have chosen an ephemeral overlay
	if ovPath != "" {
		if err := s.Guard.Check(ovPath, "the overlay", true); errors.Is(err, outpath.ErrIsInput) {
			return nil, &UsageError{err}
		}
		if err := checkDir(ovPath, "the overlay", req.Overlay == ""); err != nil {
			return nil, err
		}
		if err := s.Guard.AddInput(ovPath, "the overlay in use"); err != nil {
			return nil, err
		}
	}
	if req.Report != "" {
		if err := s.Guard.Check(req.Report, "the report", req.Force); err != nil {
			return nil, asUsage(err)
		}
		if ovPath != "" && sameAbs(req.Report, ovPath) {
			return nil, usagef("refusing to write the report to %s: it is the overlay in use; choose another path", req.Report)
		}
	}
	for _, o := range req.Outputs {
		if err := s.Guard.Check(o.Path, o.What, req.Force); err != nil {
			return nil, asUsage(err)
		}
		if ovPath != "" && sameAbs(o.Path, ovPath) {
			return nil, usagef("refusing to write %s to %s: it is the overlay in use; choose another path", o.What, o.Path)
		}
		if req.Report != "" && sameAbs(o.Path, req.Report) {
			return nil, usagef("%s and the report are the same file %s", o.What, o.Path)
		}
	}
	if req.Check != nil {
		if err := req.Check(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// 4–6. Overlay and patch.
	switch {
	case ovPath == "" && !req.Ephemeral:
		s.logf("serving %s read-only with no overlay", req.Image)
	case req.Ephemeral:
		err = s.openEphemeral(ctx)
	default:
		err = s.openPersistent(ctx, ovPath)
	}
	if err != nil {
		return nil, err
	}

	// 7. Report.
	if req.Report != "" && !req.ReportOnSuccess {
		if err := s.WriteReport(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (r *Request) check() error {
	if err := r.Patch.Check(); err != nil {
		return err
	}
	if r.Ephemeral && r.Overlay != "" {
		return usagef("--ephemeral excludes --overlay")
	}
	if r.Hash && r.Report == "" {
		return usagef("--hash goes with --report")
	}
	if r.Stderr == nil {
		r.Stderr = io.Discard
	}
	if r.Tool == "" {
		r.Tool = "kvmify"
	}
	return nil
}

// overlayPath decides the overlay's absolute path; "" means none (ephemeral
// or the source served directly).
func (s *Session) overlayPath() (string, error) {
	req := &s.req
	if req.Ephemeral {
		return "", nil
	}
	if req.Overlay != "" {
		return filepath.Abs(req.Overlay)
	}
	def, err := DefaultOverlayPath(req.Image)
	if err != nil {
		return "", err
	}
	found, err := exists(def)
	if err != nil {
		return "", fmt.Errorf("default overlay %s: %w", def, err)
	}
	if !found {
		if legacy := legacyOverlayPath(req.Image); legacy != "" {
			if ok, _ := exists(legacy); ok {
				s.logf("note: %s (the overlay an older kvmify made in the current directory) is not used; pass --overlay %s to use it", legacy, legacy)
			}
		}
		switch {
		case req.SourceDirect && req.Patch.NoPatch:
			return "", nil
		case req.ExistingOverlayOnly:
			req.Ephemeral = true
			return "", nil
		}
	}
	return def, nil
}

// checkDir checks that the overlay's directory exists; the default one is
// created later (only when an overlay is created).
func checkDir(path, what string, isDefault bool) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if isDefault && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot create %s %s: %w", what, path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cannot create %s %s: %s is not a directory", what, path, dir)
	}
	return nil
}

func sameAbs(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

func (s *Session) overlayOptions() overlay.Options {
	return overlay.Options{Ephemeral: s.req.Ephemeral, SourcePath: s.req.Image, FullHash: s.req.FullHash,
		OnDataError: func(e *overlay.DataError) {
			// The NBD client only sees EIO; say which block is damaged.
			s.logf("overlay data damaged, answered as an I/O error: %v", e)
		}}
}

func (s *Session) openEphemeral(ctx context.Context) error {
	var planned *Planned
	if !s.req.Patch.NoPatch {
		var err error
		planned, err = s.plan()
		if errors.Is(err, errServePlain) {
			planned, err = nil, nil
		}
		if err != nil {
			return err
		}
	}
	ov, err := overlay.Open("", s.Source, s.overlayOptions())
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	s.Overlay = ov
	if planned != nil {
		return s.apply(ov, planned, "an ephemeral overlay")
	}
	return nil
}

// openPersistent opens or creates the overlay at path and, when the
// request calls for it, puts the boot fix in it atomically.
func (s *Session) openPersistent(ctx context.Context, path string) error {
	found, err := exists(path)
	if err != nil {
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	if !found {
		return s.createOverlay(ctx, path, nil)
	}
	ov, err := overlay.Open(path, s.Source, s.overlayOptions())
	switch {
	case errors.Is(err, overlay.ErrLocked):
		return fmt.Errorf("overlay: %w; stop the other kvmify serving it, or use --ephemeral or another --overlay PATH", err)
	case errors.Is(err, overlay.ErrSourceMismatch):
		return fmt.Errorf("overlay: %w; use the image it was made for, or another --overlay PATH (or --ephemeral) for this one", err)
	case err != nil:
		return fmt.Errorf("overlay: %w", err)
	}
	if err := checkIdentity(ov, path, s.Source); err != nil {
		ov.Close()
		return err
	}
	rec, hasRec, err := patch.Applied(ov)
	if err != nil {
		ov.Close()
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	if hasRec {
		if err := s.agrees(path, rec); err != nil {
			ov.Close()
			return err
		}
		s.Overlay, s.OverlayPath, s.Record = ov, path, rec
		s.logf("overlay %s already holds the %s boot fix applied %s; serving it as it is",
			path, rec.Target, rec.AppliedAt.Format(time.RFC3339))
		return nil
	}
	if s.req.Patch.NoPatch {
		s.Overlay, s.OverlayPath = ov, path
		return nil
	}
	planned, err := s.plan()
	if errors.Is(err, errServePlain) {
		s.Overlay, s.OverlayPath = ov, path
		return nil
	}
	if err != nil {
		ov.Close()
		return err
	}
	if len(ov.Changes()) != 0 {
		ov.Close()
		return fmt.Errorf("overlay %s: %w (it was served with --no-patch and written to); serve it as it is with --no-patch, or patch a fresh one: --ephemeral or another --overlay PATH", path, patch.ErrNotFresh)
	}
	// An empty overlay without a patch: build the patched one beside it and
	// replace it, holding its lock meanwhile.
	err = s.createOverlay(ctx, path, planned)
	if cerr := ov.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// errServePlain means the disk holds no Windows and no target was asked:
// it is served without a fix.
var errServePlain = errors.New("no Windows install to patch")

// plan computes the boot fix from the open source. A disk that truly holds
// no Windows gives errServePlain unless a target was asked for; an
// unreadable or BitLocker one is refused.
func (s *Session) plan() (*Planned, error) {
	vols, err := FindVolumes(s.Source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; its partitions cannot be read (a truncated or damaged image?): check the image, or pass --no-patch to serve it as it is without a boot fix", s.req.Image, err)
	}
	p, err := planWithDrivers(s.Source, vols, s.req.Patch) // PlanVolumes + XP driver files (drivers.go)
	if errors.Is(err, ErrNoWindows) && s.req.Patch.Target == "" && s.req.Patch.Partition == 0 {
		s.logf("no Windows install found on %s (%s); serving it without a boot fix", s.req.Image, partitionList(vols))
		return nil, errServePlain
	}
	if err != nil {
		return nil, err
	}
	if len(p.Writes) == 0 {
		s.logf("%s already boots on %s; nothing to patch", s.req.Image, p.Plan.Target)
	}
	// Never apply a fix after which Windows would still stop with 0x7B:
	// it changes the disk for nothing (issue: apply only what will boot).
	if err := p.Plan.CheckBoots(s.req.Patch.ForceUnbootable); err != nil {
		return nil, fmt.Errorf("%w; nothing was written (--force-unbootable applies the fix anyway)", err)
	}
	if !p.Plan.After.OK {
		s.logf("warning: Windows is predicted to stop with 0x7B even after this fix (%s); applying it as --force-unbootable asks", p.Plan.After.Reason)
	}
	if s.req.Accept != nil {
		if err := s.req.Accept(p); err != nil {
			return nil, err
		}
	}
	s.Planned = p
	return p, nil
}

// agrees refuses an existing patch that contradicts an explicit request.
func (s *Session) agrees(path string, rec *patch.Record) error {
	p := s.req.Patch
	switch {
	case p.NoPatch:
		return fmt.Errorf("overlay %s holds the %s boot fix (applied %s), but --no-patch asks for the disk without it; kvmify never serves a patched disk for --no-patch: use --ephemeral for an unpatched view, or another --overlay PATH (this overlay is left as it is)",
			path, rec.Target, rec.AppliedAt.Format(time.RFC3339))
	case p.Target != "" && p.Target != rec.Target:
		return fmt.Errorf("overlay %s holds the %s boot fix (applied %s), but --target %s was asked; to patch for %s use another --overlay PATH or --ephemeral; to serve this overlay as it is, drop --target",
			path, rec.Target, rec.AppliedAt.Format(time.RFC3339), p.Target, p.Target)
	}
	return nil
}

// createOverlay makes the overlay at final: with a plan, it is built under
// a temporary name in final's directory, patched and committed there, and
// then linked into place (replacing an empty unpatched overlay that the
// caller holds locked); on any error the temporary file is removed, so
// final never names a half-patched overlay and no file is left behind.
func (s *Session) createOverlay(ctx context.Context, final string, planned *Planned) error {
	if planned == nil && !s.req.Patch.NoPatch {
		var err error
		planned, err = s.plan()
		if errors.Is(err, errServePlain) {
			planned, err = nil, nil
		}
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if s.req.Overlay == "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the overlay directory: %w", err)
		}
	}
	removeStaleTemps(final)
	if planned == nil {
		ov, err := overlay.Open(final, s.Source, s.overlayOptions())
		if err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
		if err := bindIdentity(ov, s.Source); err == nil {
			err = ov.Flush()
		}
		if err != nil {
			ov.Close()
			return fmt.Errorf("overlay %s: recording its source: %w", final, err)
		}
		s.Overlay, s.OverlayPath = ov, final
		s.logf("created overlay %s", final)
		return nil
	}
	replace, err := exists(final)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tempOverlayPrefix(final)+"*")
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	// overlay.Open creates an overlay only where no file exists.
	if err := os.Remove(tmpPath); err != nil {
		return err
	}
	ov, err := overlay.Open(tmpPath, s.Source, s.overlayOptions())
	if err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("overlay: %w", err)
	}
	fail := func(err error) error {
		ov.Close()
		os.Remove(tmpPath)
		return err
	}
	if err := s.apply(ov, planned, final); err != nil {
		return fail(err)
	}
	// The overlay stays open (and locked) while its final name appears.
	if err := outpath.Publish(tmpPath, final, replace); err != nil {
		return fail(fmt.Errorf("overlay %s: %w", final, err))
	}
	s.Overlay, s.OverlayPath = ov, final
	return nil
}

// apply puts the plan into ov and commits it with its record in one
// commit (patch.Apply's SetMeta); a failure part way leaves nothing
// committed, and the caller discards ov.
func (s *Session) apply(ov *overlay.Overlay, p *Planned, where string) error {
	rec := s.recordFor(p)
	if err := patch.Describe(rec, s.Source, p.Writes); err != nil {
		return err
	}
	// Staged now, committed with the patch and its record.
	if err := bindIdentity(ov, s.Source); err != nil {
		return err
	}
	if err := patch.Apply(ov, p.Writes, rec); err != nil {
		return fmt.Errorf("applying the boot fix: %w", err)
	}
	s.Record, s.Fresh = rec, true
	s.logf("applied the %s boot fix (%s): %d registry changes, %d disk extents, into %s",
		p.Plan.Target, p.Plan.Profile, len(rec.RegistryChanges), len(rec.Extents), where)
	s.logCreated(p) // drivers.go
	return nil
}

// abort releases what Open had opened when it fails.
func (s *Session) abort() {
	if s.Overlay != nil {
		s.Overlay.Close()
	}
	s.Source.Close()
}

// Install is the Windows install the run planned for, or the only one
// found on the source; nil when there is none or it cannot be read.
func (s *Session) Install() *windows.Install {
	if s.Planned != nil {
		return s.Planned.Plan.Install
	}
	vols, err := FindVolumes(s.Source)
	if err != nil {
		return nil
	}
	v, err := ChooseVolume(vols, s.req.Patch.Partition)
	if err != nil {
		return nil
	}
	return v.Installs[0]
}

// Close flushes the overlay, rewrites the report with the overlay's final
// extents, and releases everything.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	var final []overlay.Extent
	if s.Overlay != nil {
		err = s.Overlay.Flush()
		final = s.Overlay.Changes()
		if cerr := s.Overlay.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			err = fmt.Errorf("closing the overlay: %w", err)
		}
	}
	if s.req.Report != "" && s.reported && err == nil {
		err = s.writeReport(final)
	}
	if cerr := s.Source.Close(); err == nil {
		err = cerr
	}
	return err
}

// timeNow is when a patch is recorded as applied, in UTC.
func timeNow() time.Time { return time.Now().UTC() }
