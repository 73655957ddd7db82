package registry

import (
	"math/rand"
	"testing"
	"time"
)

// TestRecoverMutatedLogs replays a thousand seeded random mutations of
// valid new-format log pairs (half with their checksums and hashes made
// consistent again, so the replay logic behind them is reached) and holds
// each to checkRecovery's rules, with a watchdog against hangs. It
// complements FuzzRecoverNew with a fixed, quick sample every run.
func TestRecoverMutatedLogs(t *testing.T) {
	primary := fuzzPrimary()
	seeds := [][2][]byte{
		{newFormatLog(primary, 1, entryStart(1, 4), entryStart(2, 5)), newFormatLog(primary, 3, entryStart(3, 6))},
		{newFormatLog(primary, 10, entryStart(10, 4)), newFormatLog(primary, 11, entryStart(11, 5))},
	}
	r := rand.New(rand.NewSource(14))
	for i := range 1000 {
		s := seeds[i%len(seeds)]
		l1, l2 := append([]byte(nil), s[0]...), append([]byte(nil), s[1]...)
		for range 1 + r.Intn(4) {
			l := l1
			if r.Intn(2) == 0 {
				l = l2
			}
			l[r.Intn(len(l))] = byte(r.Intn(256))
		}
		if r.Intn(2) == 0 {
			l1, l2 = fixLogSums(l1), fixLogSums(l2)
		}
		timer := time.AfterFunc(10*time.Second, func() { panic("Recover did not return within 10 s") })
		checkRecovery(t, primary, l1, l2)
		timer.Stop()
	}
}
