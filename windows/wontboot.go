package windows

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvmify/kvmify/bootfix"
)

// ErrWontBoot marks a plan after which Windows is still predicted to stop
// with 0x7B; errors.As gives the *WontBootError.
var ErrWontBoot = errors.New("windows: the patched install is predicted not to boot")

// WontBootError says which link of the boot chain the planned fix leaves
// broken and what would mend it.
type WontBootError struct {
	Target bootfix.Target
	// After is the prediction on the patched hive; After.Broken is the
	// link.
	After bootfix.Prediction
	// Missing are the files the install lacks.
	Missing []bootfix.MissingFile
	// Advice says what to do.
	Advice string
}

func (e *WontBootError) Error() string {
	return fmt.Sprintf("refusing to patch for %s: after the fix Windows would still stop with 0x7B (INACCESSIBLE_BOOT_DEVICE): %s; %s (or pass --force to patch anyway)",
		e.Target, e.After.Reason, e.Advice)
}

// Unwrap makes the error match ErrWontBoot.
func (e *WontBootError) Unwrap() error { return ErrWontBoot }

// Boots reports whether Windows is predicted to boot after the plan, and
// why not.
func (p *Plan) Boots() (bool, string) {
	return p.After.OK, p.After.Reason
}

// CheckBoots returns a *WontBootError when the prediction after the plan is
// still 0x7B, unless force is set: applying such a plan changes the image's
// view for nothing. The pipeline refuses on it unless --force.
func (p *Plan) CheckBoots(force bool) error {
	if p.After.OK || force {
		return nil
	}
	return &WontBootError{Target: p.Target, After: p.After, Missing: p.MissingFiles, Advice: p.advice()}
}

// advice says what would mend the broken link, and which other targets the
// install already boots on.
func (p *Plan) advice() string {
	var a string
	l := p.After.Broken
	switch {
	case l == nil:
		a = "no model of the failure"
	case l.Kind == bootfix.LinkFile || l.Kind == bootfix.LinkImport:
		from := ""
		for _, m := range p.MissingFiles {
			if strings.EqualFold(m.Path, l.File) {
				from = " (Windows keeps a copy in " + m.From + ")"
			}
		}
		a = fmt.Sprintf("the install lacks %s%s: put it into %s\\%s in Windows before imaging, or choose another target", l.File, from, p.Install.Dir, l.File)
	case l.Kind == bootfix.LinkNoService:
		a = fmt.Sprintf("the driver service %s is not installed: install its driver, or choose another target", l.Service)
	case l.Kind == bootfix.LinkNoMatch:
		a = "this Windows has no driver for the controller: choose another target"
	default:
		a = "the registry fix could not repair it"
	}
	var ok []string
	for _, pr := range p.Install.Predictions {
		if pr.OK && pr.Target != p.Target {
			ok = append(ok, string(pr.Target))
		}
	}
	if len(ok) > 0 {
		a += "; it already boots on --target " + strings.Join(ok, ", ")
	}
	return a
}
