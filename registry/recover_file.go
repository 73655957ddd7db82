package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// logSuffixes are the transaction log names beside a hive, in the order
// Windows created them: XP's single log, then the Vista+ pair.
var logSuffixes = [...]string{".LOG", ".LOG1", ".LOG2"}

// FindLogs returns the paths of the transaction logs beside a hive file
// (FILE.LOG, FILE.LOG1, FILE.LOG2, names matched case-insensitively since
// they come from NTFS), in that order; missing ones are left out.
func FindLogs(hivePath string) ([]string, error) {
	dir, base := filepath.Split(hivePath)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	var out []string
	for _, n := range MatchLogNames(base, names) {
		out = append(out, filepath.Join(dir, n))
	}
	return out, nil
}

// MatchLogNames picks the transaction logs of the hive named hive out of a
// directory listing (for callers that list an NTFS directory rather than a
// local one): NAME.LOG, NAME.LOG1, NAME.LOG2, compared case-insensitively,
// returned in that order.
func MatchLogNames(hive string, names []string) []string {
	var out []string
	for _, suffix := range logSuffixes {
		for _, n := range names {
			if strings.EqualFold(n, hive+suffix) {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// RecoverFile reads a hive file and its transaction logs (logPaths, or those
// FindLogs finds when none are given) and recovers it in memory with
// Recover; the files are only read. The report names each log.
func RecoverFile(hivePath string, logPaths ...string) ([]byte, *RecoveryReport, error) {
	primary, err := os.ReadFile(hivePath)
	if err != nil {
		return nil, nil, err
	}
	if len(logPaths) == 0 {
		if logPaths, err = FindLogs(hivePath); err != nil {
			return nil, nil, err
		}
	}
	logs := make([][]byte, len(logPaths))
	for i, p := range logPaths {
		if logs[i], err = os.ReadFile(p); err != nil {
			return nil, nil, err
		}
	}
	out, rep, err := Recover(primary, logs...)
	if rep != nil {
		for i := range rep.Logs {
			rep.Logs[i].Name = filepath.Base(logPaths[i])
		}
	}
	if err != nil {
		return nil, rep, fmt.Errorf("%s: %w", hivePath, err)
	}
	return out, rep, nil
}
