package bootfix

import "testing"

// BenchmarkPredictWin7 measures one prediction (every target) and one
// ComputeChanges on the 13 MiB Windows 7 corpus hive, as inspect and plan
// run them.
func BenchmarkPredictWin7(b *testing.B) {
	p := "win7-sp1-x64.SYSTEM"
	_, h := corpusHiveB(b, p)
	hv := FromRegistry(h)
	facts := Facts{Version: Version{Major: 6, Minor: 1}, FileExists: allFiles}
	b.ReportAllocs()
	for b.Loop() {
		for _, tg := range Targets {
			if _, err := Predict(hv, facts, tg); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := ComputeChanges(hv, facts, TargetAHCI, Extras); err != nil {
			b.Fatal(err)
		}
	}
}
