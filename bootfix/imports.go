package bootfix

import (
	"path"
	"strings"
)

// knownImports are the export drivers inbox storage drivers import, used
// when a driver file cannot be read (a placeholder): the port/class
// libraries the issue of the boot model lists (pciidex for the PCI IDE
// controller drivers, ataport for atapi on Vista and later, storport for
// the Storport miniports, classpnp for disk). They agree with the drivers'
// documented architecture (controller minidrivers of pciidex, ATA port
// miniports, Storport miniports, a class driver over classpnp); no driver
// binary could be read to confirm them.
func knownImports(file string, fam Family) []string {
	switch strings.ToLower(path.Base(strings.ReplaceAll(file, `\`, "/"))) {
	case "intelide.sys", "pciide.sys":
		return []string{"pciidex.sys"}
	case "atapi.sys":
		if fam >= FamilyNT60 {
			return []string{"ataport.sys"}
		}
	case "msahci.sys":
		return []string{"ataport.sys"}
	case "storahci.sys", "stornvme.sys":
		return []string{"storport.sys"}
	case "disk.sys":
		return []string{"classpnp.sys"}
	}
	return nil
}

// alwaysLoaded are modules the loader has in memory before any boot driver
// (the kernel under its several names and the HAL), never looked up as
// driver files.
var alwaysLoaded = []string{"ntoskrnl.exe", "ntkrnlpa.exe", "ntkrnlmp.exe", "ntkrpamp.exe", "hal.dll"}

// maxImportDepth bounds the walk through export drivers importing others.
const maxImportDepth = 8

// missingImport walks the imports of a driver file (relative to the
// Windows directory) and of the export drivers they name; it returns the
// first module whose file is missing, with the file importing it. The loader
// looks an import up in System32\drivers and then System32 (where HAL,
// kdcom, ci and pshed live); that search order is the documented behaviour
// of the boot loader's import resolution as commonly described, not read
// from a source.
func missingImport(driver string, facts Facts) (importer, module, missing string) {
	seen := map[string]bool{strings.ToLower(driver): true}
	var walk func(file string, depth int) (string, string, string)
	walk = func(file string, depth int) (string, string, string) {
		if depth > maxImportDepth {
			return "", "", ""
		}
		var mods []string
		ok := false
		if facts.Imports != nil {
			mods, ok = facts.Imports(file)
		}
		if !ok {
			mods = knownImports(file, facts.Version.Family())
		}
		for _, m := range mods {
			lm := strings.ToLower(m)
			if containsFold(alwaysLoaded, lm) {
				continue
			}
			found := ""
			for _, dir := range []string{`System32\drivers\`, `System32\`} {
				if facts.FileExists(dir + m) {
					found = dir + m
					break
				}
			}
			if found == "" {
				return file, m, `System32\drivers\` + m
			}
			if !seen[strings.ToLower(found)] {
				seen[strings.ToLower(found)] = true
				if a, b, c := walk(found, depth+1); c != "" {
					return a, b, c
				}
			}
		}
		return "", "", ""
	}
	return walk(driver, 0)
}
